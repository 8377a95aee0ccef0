"""densparse.train.data and densparse.train.mining: training JSONL, pair builders, hard-negative
mining and `densparse mine`. No torch needed.

Rankings are checked against an independent reference: the same BM25 scored document by
document with ``BM25.get_scores`` (or, for the dense path, numpy dot products of the Encoder's
vectors) and sorted (score desc, id asc).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, REPO, need, subprocess_env
from densparse import BM25, Analyzer, Collection, cli
from densparse.eval import load_beir
from densparse.train.data import (
    PairStats,
    build_pairs,
    doc_text,
    load_split,
    qd_pairs,
    qq_pairs,
    read_jsonl,
    validate_record,
    write_jsonl,
)
from densparse.train.mining import mine_hard_negatives

WORDS = [
    "protein",
    "gene",
    "cell",
    "mice",
    "study",
    "result",
    "high",
    "low",
    "model",
    "long",
    "short",
    "effect",
    "risk",
    "cancer",
    "blood",
    "heart",
    "brain",
    "drug",
    "dose",
    "trial",
    "patient",
    "therapy",
    "virus",
    "immune",
    "response",
    "signal",
    "tissue",
    "growth",
    "factor",
    "receptor",
    "binding",
    "mutation",
    "expression",
    "level",
]


# ---------------------------------------------------------------------------- helpers
def write_beir(root: Path, corpus: dict, queries: dict, qrels: list, split: str = "train") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "corpus.jsonl", "w", encoding="utf-8") as f:
        for did, d in corpus.items():
            f.write(json.dumps({"_id": did, **d}, ensure_ascii=False) + "\n")
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, t in queries.items():
            f.write(json.dumps({"_id": qid, "text": t}, ensure_ascii=False) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    with open(root / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for q, d, r in qrels:
            f.write(f"{q}\t{d}\t{r}\n")
    return root


def synthetic(n_docs: int = 80, n_queries: int = 12, seed: int = 0):
    """A random corpus over WORDS; query i is 3 words of its positive doc(s)."""
    rng = np.random.default_rng(seed)
    corpus = {}
    for i in range(n_docs):
        words = rng.choice(WORDS, size=int(rng.integers(6, 14)))
        title = " ".join(rng.choice(WORDS, size=2)) if i % 3 == 0 else ""
        corpus[f"d{i}"] = {"title": title, "text": " ".join(words)}
    queries, qrels = {}, []
    for q in range(n_queries):
        pos = [f"d{q * 5}"] + ([f"d{q * 5 + 1}"] if q % 4 == 0 else [])
        text = corpus[pos[0]]["text"].split()
        queries[f"q{q}"] = " ".join(text[:3])
        qrels += [(f"q{q}", p, 1) for p in pos]
        qrels.append((f"q{q}", f"d{q * 5 + 2}", 0))  # judged not relevant: not a positive
    queries["qzero"] = "protein gene"  # only a 0 judgment: dropped
    qrels.append(("qzero", "d3", 0))
    return corpus, queries, qrels


def as_qrels(rows) -> dict:
    out: dict = {}
    for q, d, r in rows:
        out.setdefault(q, {})[d] = r
    return out


def bm25_ranking(texts: list[str], query: str, language: str = "auto") -> list[int]:
    """Reference ranking: every document's score, sorted score desc then id asc; only
    documents sharing a term (score > 0)."""
    bm = BM25(analyzer=Analyzer(language=language)).index(texts, show_progress=False)
    s = bm.get_scores(query)
    order = sorted(range(len(texts)), key=lambda i: (-float(s[i]), i))
    return [i for i in order if s[i] > 0]


@pytest.fixture
def tiny_ds(tmp_path):
    corpus, queries, qrels = synthetic()
    return write_beir(tmp_path / "ds", corpus, queries, qrels), corpus, queries, qrels


def check_invariants(recs, corpus_text: dict, n_neg: int, mode: str = "qd", queries=None):
    for r in recs:
        validate_record(r)
        assert len(r["neg"]) == n_neg == len(r["neg_ids"])
        assert not set(r["neg_ids"]) & set(r["pos_ids"])
        assert len(set(r["neg_ids"])) == len(r["neg_ids"])
        assert r["query"] not in r["neg"]
        assert not set(r["neg"]) & set(r["pos"])
        pool = corpus_text if mode == "qd" else queries
        assert [pool[i] for i in r["neg_ids"]] == r["neg"]
        if mode == "qq":
            assert r["query_id"] not in r["neg_ids"]


# ---------------------------------------------------------------------------- JSONL
def test_roundtrip_plain_and_gz(tmp_path):
    recs = [
        {"query": "押金怎么退", "pos": ["房东不退押金"], "neg": ["a", "b"], "prompt": "p: "},
        {"query": "q", "pos": ["x", "y"], "neg": [], "query_id": "7", "pos_ids": ["1", "2"]},
        {"query": "q2", "pos": ["x"], "neg": ["n"], "neg_ids": ["9"], "extra": {"k": 1}},
    ]
    for name in ("out/t.jsonl", "t.jsonl.gz"):
        assert write_jsonl(recs, tmp_path / name) == 3
        assert read_jsonl(tmp_path / name) == recs
    assert "押金" in (tmp_path / "out/t.jsonl").read_text(encoding="utf-8")  # not \\u-escaped
    with gzip.open(tmp_path / "t.jsonl.gz", "rt", encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 3
    assert not list(tmp_path.glob("**/.*tmp*"))  # no temp file left behind


def test_read_skips_blank_lines_and_crlf(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_bytes(b'\n{"query": "q", "pos": ["p"], "neg": []}\r\n\n')
    assert read_jsonl(p) == [{"query": "q", "pos": ["p"], "neg": []}]


BAD_LINES = [
    ("{not json", "invalid JSON"),
    ("[1, 2]", "expected a JSON object, got list"),
    ('"q"', "expected a JSON object, got str"),
    ('{"pos": ["p"], "neg": []}', "missing 'query'"),
    ('{"query": "q", "neg": []}', "missing 'pos'"),
    ('{"query": "q", "pos": ["p"]}', "missing 'neg'"),
    ('{"query": 3, "pos": ["p"], "neg": []}', "'query' must be a str, got int"),
    ('{"query": "  ", "pos": ["p"], "neg": []}', "'query' is an empty string"),
    ('{"query": "q", "pos": "p", "neg": []}', "'pos' must be a list of str, got str"),
    ('{"query": "q", "pos": [], "neg": []}', "'pos' is an empty list"),
    ('{"query": "q", "pos": ["p", 1], "neg": []}', r"pos\[1\] must be a str, got int"),
    ('{"query": "q", "pos": ["p", ""], "neg": []}', r"pos\[1\] is an empty string"),
    ('{"query": "q", "pos": ["p"], "neg": null}', "'neg' must be a list of str, got NoneType"),
    ('{"query": "q", "pos": ["p"], "neg": [null]}', r"neg\[0\] must be a str"),
    ('{"query": "q", "pos": ["p"], "neg": [], "prompt": 1}', "'prompt' must be a str"),
    ('{"query": "q", "pos": ["p"], "neg": [], "query_id": 1}', "'query_id' must be a str"),
    ('{"query": "q", "pos": ["p"], "neg": [], "pos_ids": ["1", "2"]}', "'pos_ids' has 2 ids"),
    ('{"query": "q", "pos": ["p"], "neg": ["n"], "neg_ids": [1]}', "'neg_ids' must be a list"),
]


@pytest.mark.parametrize("line,msg", BAD_LINES)
def test_read_bad_lines_name_file_and_line(tmp_path, line, msg):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"query": "ok", "pos": ["p"], "neg": []}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=msg) as e:
        read_jsonl(p)
    assert f"{p}:3:" in str(e.value)


def test_read_empty_and_missing(tmp_path):
    for content in ("", "\n  \n"):
        p = tmp_path / "empty.jsonl"
        p.write_text(content)
        with pytest.raises(ValueError, match="empty training file"):
            read_jsonl(p)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_jsonl(tmp_path / "nope.jsonl")


def test_write_rejects_bad_records(tmp_path):
    with pytest.raises(ValueError, match=r"records\[1\]: missing 'neg'"):
        write_jsonl(
            [{"query": "q", "pos": ["p"], "neg": []}, {"query": "q", "pos": ["p"]}],
            tmp_path / "x.jsonl",
        )
    with pytest.raises(ValueError, match="no records"):
        write_jsonl([], tmp_path / "x.jsonl")
    with pytest.raises(TypeError):
        write_jsonl({"query": "q"}, tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


# ---------------------------------------------------------------------------- builders
def test_doc_text_joins_like_the_encoder():
    assert doc_text({"title": "T", "text": "body"}) == "T body"
    assert doc_text({"title": "", "text": "body"}) == "body"
    assert doc_text({"title": None, "text": "body"}) == "body"
    assert doc_text({"text": "body"}) == "body"
    assert doc_text("plain") == "plain"
    with pytest.raises(TypeError):
        doc_text(3)


def test_qd_pairs_positives(tiny_ds):
    path, corpus, queries, qrels = tiny_ds
    st = PairStats()
    recs = build_pairs(path, "train", stats=st)
    want = as_qrels(qrels)
    assert [r["query_id"] for r in recs] == [q for q in want if q != "qzero"]  # qrels order
    assert (st.queries, st.kept, st.no_positive) == (13, 12, 1)
    for r in recs:
        pos = [d for d, rel in want[r["query_id"]].items() if rel > 0]
        assert r["pos_ids"] == pos
        assert r["pos"] == [doc_text(corpus[d]) for d in pos]
        assert r["query"] == queries[r["query_id"]] and r["neg"] == []
    # a titled positive is "title text"
    r0 = recs[0]
    assert r0["pos"][0] == corpus["d0"]["title"] + " " + corpus["d0"]["text"]
    # same result from a loaded dataset and from plain dicts
    ds = load_beir(path, "train")
    assert build_pairs(ds) == recs
    assert qd_pairs(ds.corpus, ds.queries, ds.qrels) == recs


def test_qd_drops_empty_positive_and_query():
    corpus = {"a": {"title": "", "text": "  "}, "b": {"text": "fine"}}
    st = PairStats()
    recs = qd_pairs(
        corpus,
        {"q1": "x", "q2": " ", "q3": "y"},
        {"q1": {"a": 1, "b": 1}, "q2": {"b": 1}, "q3": {"a": 2}},
        stats=st,
    )
    assert [(r["query_id"], r["pos_ids"]) for r in recs] == [("q1", ["b"])]
    assert (st.empty_query, st.no_positive, st.empty_positive) == (1, 1, 2)


def test_qq_pairs():
    queries = {
        "q1": "how to a",
        "q2": "a how-to",
        "q3": "about b",
        "q4": "lonely",
        "q5": "how to a",
    }
    qrels = {
        "q1": {"A": 1, "X": 0},
        "q2": {"A": 2},
        "q3": {"B": 1, "X": 1},
        "q4": {"C": 1, "X": 0},  # shares X only through a 0 judgment: no positive
        "q5": {"A": 1},  # same text as q1: not q1's positive (nor q1 its)
    }
    st = PairStats()
    recs = qq_pairs(queries, qrels, stats=st)
    got = {r["query_id"]: r["pos_ids"] for r in recs}
    assert got == {"q1": ["q2"], "q2": ["q1", "q5"], "q5": ["q2"]}
    assert recs[0]["pos"] == ["a how-to"]
    assert (st.kept, st.no_positive) == (3, 2)


def test_qq_pairs_from_folder(tmp_path):
    corpus = {d: {"title": "", "text": f"doc {d}"} for d in ("A", "B")}
    queries = {"q1": "one", "q2": "two", "q3": "three"}
    path = write_beir(
        tmp_path / "faq", corpus, queries, [("q1", "A", 1), ("q2", "A", 1), ("q3", "B", 1)]
    )
    recs = build_pairs(path, mode="qq")
    assert [(r["query_id"], r["pos"]) for r in recs] == [("q1", ["two"]), ("q2", ["one"])]
    with pytest.raises(ValueError, match="mode must be one of"):
        build_pairs(path, mode="qa")


def test_unknown_ids_error_or_skip(tmp_path):
    corpus = {"d1": {"title": "", "text": "alpha"}, "d2": {"title": "", "text": "beta"}}
    queries = {"q1": "alpha", "q2": "beta"}
    rows = [
        ("q1", "d1", 1),
        ("q1", "ghost1", 1),
        ("q2", "d2", 1),
        ("q2", "ghost2", 1),
        ("qx", "d1", 1),
    ]
    path = write_beir(tmp_path / "u", corpus, queries, rows)
    with pytest.raises(ValueError) as e:
        load_split(path, "train")
    msg = str(e.value)
    assert "1 unknown query ids ('qx')" in msg
    assert "2 unknown document ids ('ghost1', 'ghost2')" in msg
    assert "train.tsv" in msg and "skip_unknown" in msg
    with pytest.warns(UserWarning, match="unknown document ids"):
        ds = load_split(path, "train", skip_unknown=True)
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}}
    # the dict API checks too, and lists at most 5 ids
    many = {"q1": {f"x{i}": 1 for i in range(8)}}
    with pytest.raises(ValueError, match=r"8 unknown document ids \('x0', .*'x4' and 3 more\)"):
        mine_hard_negatives(corpus, queries, many)
    with pytest.raises(ValueError, match="unknown query ids"):
        qq_pairs(queries, {"nope": {"d1": 1}})
    with pytest.warns(UserWarning):
        recs = mine_hard_negatives(
            corpus, queries, as_qrels(rows), skip_unknown=True, negative_number=1, range_start=0
        )
    assert [r["pos_ids"] for r in recs] == [["d1"], ["d2"]]
    assert cli.main(["mine", str(path), str(tmp_path / "o.jsonl"), "-q"]) == 2
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_split_lists_available(tiny_ds):
    path = tiny_ds[0]
    with pytest.raises(FileNotFoundError, match=r"available: train"):
        load_split(path, "dev")


# ---------------------------------------------------------------------------- mining (BM25)
def test_mine_bm25_invariants_and_ranks(tiny_ds):
    path = tiny_ds[0]
    ds = load_split(path)
    ids = list(ds.corpus)
    texts = [doc_text(ds.corpus[d]) for d in ids]
    text_of = dict(zip(ids, texts))
    recs, st = mine_hard_negatives(
        ds.corpus,
        ds.queries,
        ds.qrels,
        negative_number=5,
        range_start=2,
        range_end=30,
        return_stats=True,
        language="en",
    )
    check_invariants(recs, text_of, 5)
    assert st["records"] == 12 and st["dropped_no_positive"] == 1
    assert st["negatives"] == 60 == st["mined"] + st["backfilled"]
    for r in recs:
        ranking = [ids[i] for i in bm25_ranking(texts, r["query"], "en")][:30]
        allowed = [d for d in ranking[2:] if d not in r["pos_ids"]]
        top2 = set(ranking[:2])
        assert not top2 & set(r["neg_ids"])
        mined = [d for d in r["neg_ids"] if d in allowed]
        if len(allowed) >= 5:
            assert mined == r["neg_ids"]  # all from ranks [2, 30)
            assert mined == [d for d in allowed if d in set(mined)]  # in rank order


def test_known_top_ranks_excluded(tmp_path):
    # ranks 0 and 1 are the two decoys (they repeat the query), the positive comes later
    docs = {
        "top0": "alpha beta gamma alpha beta gamma alpha beta gamma",
        "top1": "alpha beta gamma alpha beta gamma",
        "pos": "alpha something else entirely here",
    }
    for i in range(20):
        docs[f"f{i}"] = f"beta filler{i} word{i} more{i} text{i}"
    corpus = {k: {"title": "", "text": v} for k, v in docs.items()}
    queries = {"q": "alpha beta gamma"}
    qrels = {"q": {"pos": 1}}
    texts = list(docs.values())
    ranking = [list(docs)[i] for i in bm25_ranking(texts, "alpha beta gamma")]
    assert ranking[:2] == ["top0", "top1"]  # the construction holds
    for seed in range(5):
        [r] = mine_hard_negatives(
            corpus, queries, qrels, range_start=2, negative_number=5, seed=seed
        )
        assert not {"top0", "top1", "pos"} & set(r["neg_ids"]) and len(r["neg"]) == 5
        [r0] = mine_hard_negatives(
            corpus, queries, qrels, range_start=0, negative_number=22, seed=seed
        )
        assert {"top0", "top1"} <= set(r0["neg_ids"]) and "pos" not in r0["neg_ids"]
    # a duplicate of a top-2 text is a likely false negative too: never used
    dup_corpus = {**corpus, "top0copy": {"title": "", "text": docs["top0"]}}
    for seed in range(3):  # top0copy ties with top0 and comes second (higher id): rank 1
        [r] = mine_hard_negatives(
            dup_corpus, queries, qrels, range_start=1, negative_number=22, seed=seed
        )
        assert not {"top0", "top0copy", "pos"} & set(r["neg_ids"])
        assert len(r["neg_ids"]) == 21  # top1 + the 20 fillers: the pool holds no more
    # range_end bounds the mined ranks: ranks [2, 5) hold 3 documents (pos is among them or
    # not), the rest is backfill from outside the top 2
    [r] = mine_hard_negatives(corpus, queries, qrels, range_start=2, range_end=5, negative_number=8)
    in_range = [d for d in ranking[2:5] if d != "pos"]
    assert r["neg_ids"][: len(in_range)] == in_range
    assert not {"top0", "top1", "pos"} & set(r["neg_ids"]) and len(r["neg_ids"]) == 8


def test_backfill_small_corpus_and_short():
    corpus = {f"d{i}": {"title": "", "text": f"unique{i} words{i}"} for i in range(10)}
    corpus["p"] = {"title": "", "text": "apple pie"}
    corpus["dup"] = {"title": "", "text": "apple pie"}  # same text as the positive: never a neg
    corpus["blank"] = {"title": "", "text": "   "}  # blank: never a neg
    corpus["same_as_query"] = {"title": "", "text": "apple"}  # the query itself: never a neg
    queries = {"q": "apple"}
    qrels = {"q": {"p": 1}}
    # BM25 finds nothing but the positive, its duplicate and the query's twin: all backfill
    recs, st = mine_hard_negatives(corpus, queries, qrels, negative_number=6, return_stats=True)
    [r] = recs
    assert len(r["neg"]) == 6 and st["backfilled"] == 6 and st["mined"] == 0
    assert set(r["neg_ids"]) <= {f"d{i}" for i in range(10)}
    # the pool allows only 10 negatives: 12 asked -> 10, counted as short
    recs, st = mine_hard_negatives(corpus, queries, qrels, negative_number=12, return_stats=True)
    assert sorted(recs[0]["neg_ids"]) == sorted(f"d{i}" for i in range(10))
    assert st["short"] == 1
    # no negatives asked
    [r] = mine_hard_negatives(corpus, queries, qrels, negative_number=0)
    assert r["neg"] == [] == r["neg_ids"]


def test_seed_determinism(tiny_ds):
    _, corpus, queries, qrels = tiny_ds
    q = as_qrels(qrels)
    kw = dict(negative_number=4, range_end=40)
    a = mine_hard_negatives(corpus, queries, q, seed=1, **kw)
    b = mine_hard_negatives(corpus, queries, q, seed=1, **kw)
    c = mine_hard_negatives(corpus, queries, q, seed=2, **kw)
    assert a == b
    assert [r["neg_ids"] for r in a] != [r["neg_ids"] for r in c]
    # a query's negatives do not depend on the other queries mined with it
    sub = {k: v for k, v in q.items() if k in ("q3", "q7")}
    d = mine_hard_negatives(corpus, queries, sub, seed=1, **kw)
    assert [r["neg_ids"] for r in d] == [r["neg_ids"] for r in a if r["query_id"] in sub]


def test_qq_mode_mining():
    queries = {f"q{i}": f"how do I reset my {w} password" for i, w in enumerate(WORDS[:20])}
    queries["dup"] = queries["q0"]  # same text as q0
    qrels = {f"q{i}": {f"A{i // 2}": 1} for i in range(20)}  # q0/q1 share A0, q2/q3 A1, ...
    qrels["dup"] = {"A9": 1}  # shares with q18, q19; same text as q0
    corpus = {f"A{i}": {"title": "", "text": f"answer {i}"} for i in range(10)}
    recs, st = mine_hard_negatives(
        corpus, queries, qrels, mode="qq", negative_number=5, range_start=0, return_stats=True
    )
    assert st["records"] == 21
    check_invariants(recs, {}, 5, mode="qq", queries=queries)
    by = {r["query_id"]: r for r in recs}
    assert by["q0"]["pos_ids"] == ["q1"] and by["q0"]["pos"] == [queries["q1"]]
    assert by["dup"]["pos_ids"] == ["q18", "q19"]
    for r in recs:  # the query's text twin is never a negative
        assert queries["q0"] not in r["neg"] or r["query"] != queries["q0"]
        assert "dup" not in by["q0"]["neg_ids"]
    # corpus may be None in qq mode, not in qd mode
    assert (
        mine_hard_negatives(None, queries, qrels, mode="qq", negative_number=5, range_start=0)
        == recs
    )
    with pytest.raises(ValueError, match="needs a corpus"):
        mine_hard_negatives(None, queries, qrels)


def test_chinese_language_option():
    corpus = {
        "p": {"title": "", "text": "房东不退押金怎么办"},
        "n1": {"title": "", "text": "押金的法律规定和退还流程"},
        "n2": {"title": "", "text": "租房合同里的押金条款"},
        "x": {"title": "", "text": "今天天气很好"},
    }
    queries = {"q": "押金不退怎么办"}
    [r] = mine_hard_negatives(
        corpus, queries, {"q": {"p": 1}}, language="zh", range_start=0, negative_number=2
    )
    assert set(r["neg_ids"]) == {"n1", "n2"}  # both share 押金; "x" shares nothing
    with pytest.raises(ValueError, match="language"):
        mine_hard_negatives(corpus, queries, {"q": {"p": 1}}, language="fr")


def test_bad_arguments(tiny_ds):
    _, corpus, queries, qrels = tiny_ds
    q = as_qrels(qrels)
    bad = [
        (dict(range_start=5, range_end=5), ValueError, "must be > range_start"),
        (dict(range_start=-1), ValueError, "range_start must be >= 0"),
        (dict(negative_number=-1), ValueError, "negative_number must be >= 0"),
        (dict(negative_number=1.5), TypeError, "negative_number must be an int"),
        (dict(mode="qa"), ValueError, "mode must be one of"),
        (dict(retriever=3), TypeError, "retriever must be"),
        (dict(prompt=3), TypeError, "prompt"),
    ]
    for kw, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            mine_hard_negatives(corpus, queries, q, **kw)
    with pytest.raises(ValueError, match="no training pairs"):
        mine_hard_negatives(corpus, queries, {"q0": {"d1": 0}})
    with pytest.raises(ValueError, match="neither an existing directory"):
        mine_hard_negatives(corpus, queries, q, retriever="/no/such/model")
    with pytest.raises(TypeError, match="qrels must be a dict"):
        mine_hard_negatives(corpus, queries, [("q0", "d0", 1)])


def test_prompt_written(tiny_ds):
    _, corpus, queries, qrels = tiny_ds
    recs = mine_hard_negatives(
        corpus, queries, as_qrels(qrels), negative_number=2, prompt="Represent this: "
    )
    assert all(r["prompt"] == "Represent this: " for r in recs)


# ---------------------------------------------------------------------------- other retrievers
def test_collection_retriever(tmp_path, tiny_ds, caplog):
    _, corpus, queries, qrels = tiny_ds
    q = as_qrels(qrels)
    text_of = {d: doc_text(v) for d, v in corpus.items()}
    kw = dict(negative_number=4, range_end=40)
    coll = Collection.create(tmp_path / "c1", analyzer=Analyzer(language="en"), auto_merge=False)
    coll.add([{"id": d, "text": t} for d, t in text_of.items()])
    recs = mine_hard_negatives(corpus, queries, q, retriever=coll, collection_mode="bm25", **kw)
    check_invariants(recs, text_of, 4)
    # the Collection's BM25 over the same texts ranks exactly like the plain BM25 retriever
    assert recs == mine_hard_negatives(corpus, queries, q, language="en", **kw)
    with pytest.raises(ValueError, match="mode='qd'"):
        mine_hard_negatives(corpus, queries, q, retriever=coll, mode="qq")
    coll.close()
    # documents of the collection that are not in the corpus are skipped, with a warning
    coll = Collection.create(tmp_path / "c2", analyzer=Analyzer(language="en"), auto_merge=False)
    extra = [{"id": f"extra{i}", "text": " ".join(WORDS[i : i + 6])} for i in range(20)]
    coll.add([{"id": d, "text": t} for d, t in text_of.items()] + extra)
    with caplog.at_level("WARNING", logger="densparse.train.mining"):
        recs = mine_hard_negatives(corpus, queries, q, retriever=coll, **kw)
    assert "not in the corpus and were skipped" in caplog.text
    check_invariants(recs, text_of, 4)
    coll.close()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    pytest.importorskip("onnx", reason="building the tiny test model needs the onnx package")
    pytest.importorskip("onnxruntime", reason="the Encoder needs onnxruntime")
    pytest.importorskip("tokenizers", reason="the Encoder needs tokenizers")
    from test_encoder import make_model_dir, st_files

    d, _ = make_model_dir(tmp_path_factory.mktemp("mine") / "model", files=st_files("mean"))
    return d


def test_dense_retriever_ranks_match_numpy(tiny_model, tiny_ds):
    from densparse import Encoder

    _, corpus, queries, qrels = tiny_ds
    q = as_qrels(qrels)
    enc = Encoder.from_pretrained(tiny_model, provider="cpu", threads=1)
    ids = list(corpus)
    texts = [doc_text(corpus[d]) for d in ids]
    recs = mine_hard_negatives(
        corpus, queries, q, retriever=enc, negative_number=4, range_start=2, range_end=12
    )
    check_invariants(recs, dict(zip(ids, texts)), 4)
    dv = enc.encode_corpus(texts)
    for r in recs:
        qv = enc.encode_queries([r["query"]])[0]
        s = dv @ qv
        order = sorted(range(len(ids)), key=lambda i: (-float(s[i]), i))
        ranking = [ids[i] for i in order]
        allowed = [d for d in ranking[2:12] if d not in r["pos_ids"]]
        assert not set(ranking[:2]) & set(r["neg_ids"])
        assert set(r["neg_ids"]) <= set(allowed) or len(allowed) < 4
    # a model directory works the same
    assert (
        mine_hard_negatives(
            corpus,
            queries,
            q,
            retriever=str(tiny_model),
            negative_number=4,
            range_start=2,
            range_end=12,
        )
        == recs
    )


def test_dense_max_length_truncates(tiny_model, tiny_ds):
    from densparse import Encoder

    _, corpus, queries, qrels = tiny_ds
    enc = Encoder.from_pretrained(tiny_model, provider="cpu", threads=1)
    ids = list(corpus)
    texts = [doc_text(corpus[d]) for d in ids]
    recs = mine_hard_negatives(
        corpus,
        queries,
        as_qrels(qrels),
        retriever=enc,
        range_start=0,
        range_end=3,
        negative_number=1,
        max_length=5,
    )
    dv = enc.encode_corpus(texts, max_length=5)
    for r in recs:
        s = dv @ enc.encode_queries([r["query"]], max_length=5)[0]
        ranking = [ids[i] for i in sorted(range(len(ids)), key=lambda i: (-float(s[i]), i))]
        top = [d for d in ranking[:3] if d not in r["pos_ids"]]
        assert r["neg_ids"][0] in top
    with pytest.raises(ValueError, match="max_length"):
        mine_hard_negatives(corpus, queries, as_qrels(qrels), retriever=enc, max_length=0)


def test_dense_retriever_shared_minilm(tiny_ds):
    from densparse import Encoder

    model = need(REPO.parent / "shared" / "models" / "minilm-l6-int8-onnx")
    _, corpus, queries, qrels = tiny_ds
    enc = Encoder.from_pretrained(model, provider="cpu")
    text_of = {d: doc_text(v) for d, v in corpus.items()}
    recs = mine_hard_negatives(corpus, queries, as_qrels(qrels), retriever=enc, negative_number=3)
    check_invariants(recs, text_of, 3)


# ---------------------------------------------------------------------------- CLI
def test_cli_mine(tiny_ds, tmp_path, capsys):
    path = tiny_ds[0]
    out = tmp_path / "train.jsonl"
    args = [
        "mine",
        str(path),
        str(out),
        "--negatives",
        "3",
        "--range",
        "1",
        "50",
        "--seed",
        "4",
        "--language",
        "en",
        "--quiet",
    ]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "12 records (qd) from 13 judged queries" in printed
    assert "dropped 1 without a positive" in printed and "36 negatives" in printed
    recs = read_jsonl(out)
    ds = load_split(path)
    api = mine_hard_negatives(
        ds.corpus,
        ds.queries,
        ds.qrels,
        negative_number=3,
        range_start=1,
        range_end=50,
        seed=4,
        language="en",
    )
    assert recs == api
    assert (
        cli.main(
            ["mine", str(path), str(tmp_path / "qq.jsonl"), "--mode", "qq", "-q", "--prompt", "P"]
        )
        == 2
    )  # the synthetic queries share no document
    assert "no training pairs" in capsys.readouterr().err
    assert cli.main(["mine", str(path), str(out), "--range", "5", "5", "-q"]) == 2
    assert cli.main(["mine", str(tmp_path / "nope"), str(out), "-q"]) == 2


def test_cli_mine_dense(tiny_model, tiny_ds, tmp_path, capsys):
    path = tiny_ds[0]
    out = tmp_path / "d.jsonl"
    assert (
        cli.main(
            ["mine", str(path), str(out), "--retriever", str(tiny_model), "-q", "--negatives", "2"]
        )
        == 0
    )
    assert len(read_jsonl(out)) == 12
    bad = tmp_path / "notamodel"
    bad.mkdir()
    assert cli.main(["mine", str(path), str(out), "--retriever", str(bad), "-q"]) == 2


def test_cli_entry_point_help():
    r = subprocess.run(
        [sys.executable, "-m", "densparse.cli", "mine", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=subprocess_env(),
    )
    assert r.returncode == 0 and "--negatives" in r.stdout and "--range START END" in r.stdout


# ---------------------------------------------------------------------------- SciFact, torch
def test_scifact_train():
    root = need(DATA / "scifact")
    ds = load_split(root, "train")
    recs, st = mine_hard_negatives(
        ds.corpus, ds.queries, ds.qrels, language="en", return_stats=True, show_progress=False
    )
    text_of = {d: doc_text(v) for d, v in ds.corpus.items()}
    check_invariants(recs, text_of, 15)
    assert (
        st["records"] == len(recs) == sum(any(r > 0 for r in j.values()) for j in ds.qrels.values())
    )
    for r in recs[:50]:
        assert r["pos_ids"] == [d for d, rel in ds.qrels[r["query_id"]].items() if rel > 0]
    qq = build_pairs(ds, mode="qq")
    assert qq and all(set(r["pos_ids"]) <= set(ds.queries) for r in qq)


def test_import_is_torch_free():
    code = (
        "import sys, densparse.train, densparse.train.data, densparse.train.mining; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=subprocess_env(),
    )
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------- existing records
def test_add_hard_negatives_equals_mining_from_qrels(tiny_ds):
    from densparse.train.mining import add_hard_negatives

    _, corpus, queries, qrels = tiny_ds
    q = as_qrels(qrels)
    kw = dict(negative_number=4, range_end=40, seed=3, language="en")
    pairs = qd_pairs(corpus, queries, q)
    frozen = json.dumps(pairs)
    got, st = add_hard_negatives(pairs, corpus, return_stats=True, **kw)
    assert json.dumps(pairs) == frozen  # the input is not modified
    assert got == mine_hard_negatives(corpus, queries, q, **kw)
    assert st["records"] == 12 and st["negatives"] == 48
    # a list pool gives no neg_ids; positives and the query are excluded by text
    texts = [doc_text(v) for v in corpus.values()]
    # (the sampling RNG is keyed by query_id, or the record's position without one)
    plain = [{"query": r["query"], "pos": r["pos"], "query_id": r["query_id"]} for r in pairs]
    got2 = add_hard_negatives(plain, texts, **kw)
    for r in got2:
        assert "neg_ids" not in r and len(r["neg"]) == 4
        assert not set(r["neg"]) & set(r["pos"]) and r["query"] not in r["neg"]
    assert [r["neg"] for r in got2] == [r["neg"] for r in got]


def test_add_hard_negatives_default_pool_and_errors(tmp_path):
    from densparse.train.mining import add_hard_negatives

    recs = [
        {"query": "apple pie recipe", "pos": ["apple pie with cinnamon"], "neg": ["old neg"]},
        {"query": "banana bread", "pos": ["banana bread loaf"]},
        {"query": "cherry tart", "pos": ["cherry tart pastry"], "neg": ["apple crumble"]},
    ]
    out = add_hard_negatives(recs, negative_number=3, range_start=0)
    pool = {
        "apple pie with cinnamon",
        "old neg",
        "banana bread loaf",
        "cherry tart pastry",
        "apple crumble",
    }
    for r, src in zip(out, recs):
        assert len(r["neg"]) == 3 and set(r["neg"]) <= pool - set(src["pos"])
    assert out[0]["neg"][0] == "apple crumble"  # the only other text sharing a term: rank 1
    bad = [
        (([],), ValueError, "records is empty"),
        (([{"query": "q"}],), ValueError, r"records\[0\]: missing 'pos'"),
        (([{"query": "q", "pos": ["p"]}], []), ValueError, "pool is empty"),
        (([{"query": "q", "pos": ["p"]}], "text"), TypeError, "pool must be"),
        (([{"query": "q", "pos": ["p"]}], [1]), TypeError, r"pool\[0\]"),
        (({"query": "q"},), TypeError, "records must be a list"),
    ]
    for args, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            add_hard_negatives(*args)
    coll = Collection.create(tmp_path / "c")
    coll.add([{"id": "a", "text": "apple"}])
    with pytest.raises(ValueError, match="needs a pool"):
        add_hard_negatives(recs, ["x y"], retriever=coll)
    coll.close()


def test_read_pool(tmp_path):
    from densparse.train.data import read_pool

    p = tmp_path / "pool.jsonl"
    p.write_text('{"text": "a b"}\n{"text": "c", "title": "T"}\n')
    assert read_pool(p) == ["a b", "T c"]
    p.write_text('{"_id": "1", "text": "a b"}\n{"_id": 2, "text": "c", "title": "T"}\n')
    assert read_pool(p) == {"1": {"title": "", "text": "a b"}, "2": {"title": "T", "text": "c"}}
    for content, msg in [
        ("", "empty candidate pool"),
        ('{"text": 1}\n', ":1: 'text'"),
        ('{"x": "a"}\n', ":1: 'text'"),
        ("[1]\n", ":1: expected a JSON object"),
        ("{bad\n", ":1: invalid JSON"),
        ('{"_id": "1", "text": "a"}\n{"_id": "1", "text": "b"}\n', "duplicate _id"),
    ]:
        p.write_text(content)
        with pytest.raises(ValueError, match=msg):
            read_pool(p)


def test_cli_mine_jsonl_input(tiny_ds, tmp_path, capsys):
    path = tiny_ds[0]
    base = tmp_path / "base.jsonl"
    write_jsonl(build_pairs(path), base)
    out = tmp_path / "mined.jsonl"
    assert (
        cli.main(
            [
                "mine",
                str(base),
                str(out),
                "--negatives",
                "2",
                "-q",
                "--pool",
                str(path / "corpus.jsonl"),
            ]
        )
        == 0
    )
    assert "12 records from" in capsys.readouterr().out
    recs = read_jsonl(out)
    ds = load_split(path)
    assert recs == mine_hard_negatives(ds.corpus, ds.queries, ds.qrels, negative_number=2)
    assert cli.main(["mine", str(base), str(out), "--negatives", "2", "-q"]) == 0
    assert all(len(r["neg"]) == 2 and "neg_ids" not in r for r in read_jsonl(out))
    assert cli.main(["mine", str(path), str(out), "--pool", str(base), "-q"]) == 2
    (tmp_path / "empty.jsonl").write_text("")
    assert cli.main(["mine", str(tmp_path / "empty.jsonl"), str(out), "-q"]) == 2
    assert "empty training file" in capsys.readouterr().err
