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
    with pytest.raises(SystemExit, match="holds no index"):
        cli.main(["search", str(tmp_path), "x"])
    assert cli.main(["index", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "o")]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [[], ["index"], ["search"], ["eval"], ["demo"]])
def test_help(cmd):
    r = subprocess.run(
        [sys.executable, "-m", "densparse.cli", *cmd, "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and "usage" in r.stdout
