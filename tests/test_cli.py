"""The densparse command: demo, index, search, eval, help."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from densparse import cli


def test_demo_finds_the_right_documents():
    out = io.StringIO()
    res = cli.run_demo(out=out)
    text = out.getvalue()
    assert "老板拖欠工资" in text and "Getting your security deposit back" in text
    assert res["ndcg@3"] >= 0.9, res


def write_beir(tmp_path):
    docs = [
        {"_id": "d1", "title": "押金", "text": "房东不退押金怎么办，可以起诉。"},
        {
            "_id": "d2",
            "title": "Deposit",
            "text": "How to get a security deposit back from a landlord.",
        },
        {"_id": "d3", "title": "工资", "text": "老板拖欠工资可以申请劳动仲裁。"},
    ]
    (tmp_path / "corpus.jsonl").write_text(
        "\n".join(json.dumps(d, ensure_ascii=False) for d in docs), "utf-8"
    )
    qs = [{"_id": "q1", "text": "押金不退"}, {"_id": "q2", "text": "unpaid wages 拖欠工资"}]
    (tmp_path / "queries.jsonl").write_text(
        "\n".join(json.dumps(q, ensure_ascii=False) for q in qs), "utf-8"
    )
    (tmp_path / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t1\n", "utf-8"
    )


def test_index_search_eval(tmp_path, capsys):
    write_beir(tmp_path)
    idx = tmp_path / "idx"
    assert cli.main(["index", str(tmp_path / "corpus.jsonl"), "-o", str(idx), "--quiet"]) == 0
    assert "indexed 3 documents" in capsys.readouterr().out
    assert cli.main(["search", str(idx), "押金", "-k", "2"]) == 0
    out = capsys.readouterr().out
    first = [line.split() for line in out.splitlines() if line.strip().startswith("1.")]
    assert first[0][2] == "d1", out
    run = tmp_path / "run.trec"
    code = cli.main(
        [
            "eval",
            str(idx),
            "--queries",
            str(tmp_path / "queries.jsonl"),
            "--qrels",
            str(tmp_path / "qrels.tsv"),
            "-k",
            "3",
            "--run",
            str(run),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "ndcg@10" in out and "1.0000" in out
    assert run.read_text().count("Q0") == 6


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert cli.main(["search", str(tmp_path), "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("densparse: error: ") and "holds no index" in err, err
    write_beir(tmp_path)
    args = ["--queries", str(tmp_path / "queries.jsonl"), "--qrels", str(tmp_path / "qrels.tsv")]
    assert cli.main(["eval", str(tmp_path / "nothing"), *args]) == 2
    assert capsys.readouterr().err.startswith("densparse: error: ")
    assert cli.main(["index", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("densparse: error: ") and "missing.jsonl" in err, err


def test_binary_corpus_error_names_the_file(tmp_path, capsys):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_bytes(b'{"_id": "a", "text": "ok"}\n\x89PNG\r\n\x1a\n\x00\xff\xfe')
    assert cli.main(["index", str(corpus), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("densparse: error: ") and f"{corpus}: not UTF-8" in err, err
    gz = tmp_path / "corpus.jsonl.gz"
    gz.write_bytes(b"not gzip at all")
    assert cli.main(["index", str(gz), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert str(gz) in err and "gzip" in err, err


def test_index_refuses_a_non_empty_directory_without_overwrite(tmp_path, capsys):
    write_beir(tmp_path)
    out = tmp_path / "idx"
    out.mkdir()
    (out / "notes.txt").write_text("mine", "utf-8")
    corpus = str(tmp_path / "corpus.jsonl")
    assert cli.main(["index", corpus, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "densparse: error: " in err and "--overwrite" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # nothing written
    assert cli.main(["index", corpus, "-o", str(out), "--overwrite"]) == 0
    assert (out / cli.INDEX_FILE).is_file() and (out / "notes.txt").is_file()
    # an empty directory needs no flag
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["index", corpus, "-o", str(empty)]) == 0


def test_eval_warns_when_qrels_match_no_indexed_document(tmp_path, capsys):
    write_beir(tmp_path)
    idx = tmp_path / "idx"
    assert cli.main(["index", str(tmp_path / "corpus.jsonl"), "-o", str(idx)]) == 0
    other = tmp_path / "other.tsv"
    other.write_text("query-id\tcorpus-id\tscore\nq1\tx9\t1\nq2\tx8\t1\n", "utf-8")
    args = ["eval", str(idx), "--queries", str(tmp_path / "queries.jsonl")]
    capsys.readouterr()
    assert cli.main([*args, "--qrels", str(other)]) == 0
    err = capsys.readouterr().err
    assert "densparse: warning: none of the 2 documents judged" in err, err
    assert cli.main([*args, "--qrels", str(tmp_path / "qrels.tsv")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_search_hints_at_a_stopword_only_query(tmp_path, capsys):
    write_beir(tmp_path)
    idx = tmp_path / "idx"
    assert cli.main(["index", str(tmp_path / "corpus.jsonl"), "-o", str(idx)]) == 0
    capsys.readouterr()
    assert cli.main(["search", str(idx), "the of and"]) == 0
    assert "no searchable tokens" in capsys.readouterr().err
    assert cli.main(["search", str(idx), "zebra"]) == 0
    assert "no indexed document shares a term" in capsys.readouterr().err
    assert cli.main(["search", str(idx), "押金"]) == 0
    assert capsys.readouterr().err == ""


def test_damaged_docs_file_is_a_clear_error(tmp_path, capsys):
    write_beir(tmp_path)
    idx = tmp_path / "idx"
    assert cli.main(["index", str(tmp_path / "corpus.jsonl"), "-o", str(idx), "--quiet"]) == 0
    docs = (idx / "docs.jsonl").read_text("utf-8").splitlines()
    for damaged, message in (
        (docs[:2], "has 2 documents but the index has 3"),
        ([*docs[:2], "{not json"], "docs.jsonl:3: not JSON"),
        ([*docs[:2], "[1, 2]"], "docs.jsonl:3: not a document"),
    ):
        (idx / "docs.jsonl").write_text("\n".join(damaged) + "\n", "utf-8")
        capsys.readouterr()
        assert cli.main(["search", str(idx), "押金"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_verbose_and_quiet_after_the_subcommand(tmp_path):
    p = cli.build_parser()
    for argv in (["-v", "demo"], ["demo", "-v"], ["demo", "--verbose"]):
        a = p.parse_args(argv)
        assert a.verbose is True and not a.quiet, argv
    a = p.parse_args(["demo"])
    assert a.verbose is False and a.quiet is None
    for argv in (["-q", "index", "c", "-o", "o"], ["index", "c", "-o", "o", "--quiet"]):
        a = p.parse_args(argv)
        assert a.quiet is True and cli._progress(a) is False, argv
    assert cli._progress(p.parse_args(["index", "c", "-o", "o"])) is None
    # finetune takes the common --quiet into its config, and only when given
    a = p.parse_args(["finetune", "--train", "t", "--model", "m", "--out", "o", "-q"])
    assert a.quiet is True
    a = p.parse_args(["finetune", "--train", "t", "--model", "m", "--out", "o"])
    assert not a.quiet


def _run_cli(args, env_extra, tmp_path):
    import os

    env = {**os.environ, **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "densparse", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )


def test_no_progress_bars_into_a_pipe(tmp_path, monkeypatch):
    """stderr is a pipe here: `index` and `mine` draw no tqdm bar, even on corpora large
    enough for one on a terminal (20,000+ documents)."""
    docs = [{"_id": f"d{i}", "title": "", "text": f"word{i % 97} text {i}"} for i in range(20_500)]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs), "utf-8")
    r = _run_cli(["index", "corpus.jsonl", "-o", "idx"], {}, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    assert "indexed 20500 documents" in r.stdout


def test_progress_bars_only_on_a_terminal(monkeypatch):
    from densparse import _progress

    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("DENSPARSE_PROGRESS", raising=False)
    monkeypatch.setattr(_progress.sys, "stderr", Tty(False))
    assert not _progress.wants_progress(None, 10**6)
    monkeypatch.setattr(_progress.sys, "stderr", Tty(True))
    assert _progress.wants_progress(None, 10**6)
    assert not _progress.wants_progress(None, 10)  # small jobs: no bar
    assert not _progress.wants_progress(False, 10**6)  # --quiet
    monkeypatch.setenv("DENSPARSE_PROGRESS", "0")
    assert not _progress.wants_progress(None, 10**6)


def test_progress_units(monkeypatch):
    """A bar counts what it says it counts (queries are not documents)."""
    import densparse.train.mining as mining
    from densparse import _progress

    seen = []
    real = _progress.Progress.__init__

    def spy(self, total, desc, enabled, unit="doc"):
        seen.append((desc, unit))
        real(self, total, desc, False, unit)

    monkeypatch.setattr(_progress.Progress, "__init__", spy)
    corpus = {f"d{i}": {"title": "", "text": f"alpha beta {i}"} for i in range(6)}
    queries = {"q1": "alpha 1", "q2": "beta 2"}
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    mining.mine_hard_negatives(corpus, queries, qrels, negative_number=2, show_progress=True)
    assert ("BM25 search", "query") in seen, seen


@pytest.mark.parametrize("cmd", [[], ["index"], ["search"], ["eval"], ["demo"], ["serve"]])
def test_help(cmd):
    r = subprocess.run(
        [sys.executable, "-m", "densparse.cli", *cmd, "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "usage" in r.stdout


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


def test_help_shows_every_default():
    """Every option with a default worth showing says it in --help, on every subcommand."""
    import argparse

    subs = _subparsers(cli.build_parser())
    assert {"index", "search", "eval", "demo", "mine", "finetune", "export", "serve"} <= set(subs)
    missing = []
    for name, sp in subs.items():
        text = " ".join(sp.format_help().split())
        for action in sp._actions:
            d = action.default
            if not action.option_strings or d in (None, False, argparse.SUPPRESS):
                continue
            shown = "default" in (action.help or "") or f"(default: {d})" in text
            if not shown and isinstance(d, list):
                shown = f"(default: {d})" in text
            if not shown:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_demo_help_describes_the_demo():
    text = " ".join(_subparsers(cli.build_parser())["demo"].format_help().split())
    assert "sample corpus" in text and "no download" in text.lower()
