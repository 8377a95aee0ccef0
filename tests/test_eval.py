"""Tests for densparse.eval: parity with pytrec_eval, BEIR/TREC readers and writers."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest

from densparse.eval import (
    DEFAULT_METRICS,
    BeirDataset,
    evaluate,
    load_beir,
    load_corpus,
    load_qrels,
    load_queries,
    read_qrels_trec,
    read_run,
    write_run,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KS = (1, 3, 10, 100)
KINDS = ("ndcg", "recall", "precision", "map", "mrr")
ALL_METRICS = [f"{kind}@{k}" for kind in KINDS for k in KS]
TOL = 1e-9  # sums are taken in the same order as trec_eval, so agreement is to rounding


def _need_data(name: str) -> Path:
    path = DATA / name
    if not path.is_dir():
        pytest.skip(f"real data not available: {path} is missing (the shared data folder)")
    return path


@pytest.fixture(scope="module")
def pytrec_eval():
    return pytest.importorskip("pytrec_eval", reason="pytrec_eval (pytrec-eval-terrier) needed")


# --------------------------------------------------------------------------- reference


def trec_order(docs: dict[str, float]) -> list[str]:
    """trec_eval's order, written independently of the library: score descending, then
    docid descending."""
    return [d for d, _ in sorted(docs.items(), key=lambda x: (x[1], x[0]), reverse=True)]


def pytrec_reference(pytrec_eval, qrels, run, ks=KS) -> dict[str, dict[str, float]]:
    """Per-query values from pytrec_eval, keyed like densparse's canonical names.

    mrr@k is pytrec_eval's recip_rank on the run cut to its top k (in trec_eval order).
    Queries without a relevant document are dropped, as densparse documents; this function
    checks that pytrec_eval scores them all 0.
    """
    cut = ",".join(map(str, ks))
    measures = {f"ndcg_cut.{cut}", f"recall.{cut}", f"P.{cut}", f"map_cut.{cut}"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    names = {"ndcg": "ndcg_cut_{}", "recall": "recall_{}", "precision": "P_{}", "map": "map_cut_{}"}
    out: dict[str, dict[str, float]] = {}
    keep = {q for q in full if any(g > 0 for g in qrels[q].values())}
    for q in set(full) - keep:
        assert all(v == 0.0 for v in full[q].values())
    for kind, pattern in names.items():
        for k in ks:
            out[f"{kind}@{k}"] = {q: full[q][pattern.format(k)] for q in keep}
    for k in ks:
        truncated = {q: {d: docs[d] for d in trec_order(docs)[:k]} for q, docs in run.items()}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(truncated)
        out[f"mrr@{k}"] = {q: rr[q]["recip_rank"] for q in keep}
    return out


def assert_parity(pytrec_eval, qrels, run) -> None:
    ref = pytrec_reference(pytrec_eval, qrels, run)
    got = evaluate(qrels, run, ALL_METRICS, per_query=True)
    assert list(got) == ALL_METRICS
    for name in ALL_METRICS:
        assert set(got[name]) == set(ref[name]), name
        for q, v in ref[name].items():
            assert got[name][q] == pytest.approx(v, abs=TOL), (name, q)
    means = evaluate(qrels, run, ALL_METRICS)
    for name in ALL_METRICS:
        assert means[name] == pytest.approx(np.mean(list(ref[name].values())), abs=TOL), name


# --------------------------------------------------------------------------- synthetic data


def random_case(seed: int) -> tuple[dict, dict]:
    """Qrels with grades -1..2 and runs with many tied scores, over ids that sort
    differently as strings and as numbers, plus non-ASCII ids."""
    rng = np.random.default_rng(seed)
    pool = (
        [f"d{i}" for i in range(120)]
        + [str(i) for i in (1, 2, 9, 10, 11, 19, 99, 100, 101, 110, 999, 1000)]
        + [f"文档{i}" for i in range(40)]
        + [f"é{i}" for i in range(20)]
        + [f"D{i:03d}" for i in range(150)]
    )
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(80):
        qid = f"q{q}"
        judged = rng.choice(len(pool), size=int(rng.integers(0, 25)), replace=False)
        grades = rng.choice([-1, 0, 1, 2], size=len(judged), p=[0.1, 0.3, 0.4, 0.2])
        if len(judged) and q % 9 != 3:
            qrels[qid] = {pool[j]: int(g) for j, g in zip(judged, grades)}
        elif q % 9 == 3:
            qrels[qid] = {pool[j]: 0 for j in judged[:3]} or {"d0": 0}  # nothing relevant
        if q % 11 == 5:
            continue  # judged query missing from the run
        n = int(rng.integers(0, len(pool)))
        retrieved = rng.choice(len(pool), size=n, replace=False)
        if q % 4 == 0:
            scores = rng.integers(0, 6, size=n) / 2.0  # heavy ties
        elif q % 4 == 1:
            scores = np.full(n, 0.25)  # everything tied
        elif q % 4 == 2:
            scores = rng.normal(size=n)
        else:
            scores = np.round(rng.normal(size=n), 1) - 0.5  # ties, negative scores
        # Most judged documents should be retrieved, or the metrics are mostly 0.
        docs = {pool[j]: float(s) for j, s in zip(retrieved, scores)}
        for d in qrels.get(qid, {}):
            if rng.random() < 0.7 and d not in docs:
                docs[d] = float(rng.integers(0, 6) / 2.0)
        run[qid] = docs
    run["not_in_qrels"] = {"d1": 1.0}
    run["q_empty"] = {}
    qrels["q_empty"] = {"d1": 1}
    return qrels, run


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_parity_random_runs_with_ties(pytrec_eval, seed):
    qrels, run = random_case(seed)
    assert_parity(pytrec_eval, qrels, run)


def test_pytrec_eval_breaks_ties_by_docid_descending(pytrec_eval):
    # The empirical fact the implementation relies on: equal scores are ordered by docid in
    # descending strcmp order ("9" > "100" > "10"), i.e. descending Python str order.
    run = {"q": {"9": 1.0, "10": 1.0, "100": 1.0}}
    for relevant, rank in (("9", 1), ("100", 2), ("10", 3)):
        qrels = {"q": {relevant: 1}}
        rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run)
        assert rr["q"]["recip_rank"] == pytest.approx(1 / rank)
        assert evaluate(qrels, run, ["mrr@10"])["mrr@10"] == pytest.approx(1 / rank)
    # Non-ASCII: "é" (U+00E9) sorts after "z" both by code point and by UTF-8 bytes.
    run = {"q": {"é": 1.0, "z": 1.0, "Z": 1.0}}
    rr = pytrec_eval.RelevanceEvaluator({"q": {"é": 1}}, {"recip_rank"}).evaluate(run)
    assert rr["q"]["recip_rank"] == 1.0
    assert evaluate({"q": {"é": 1}}, run, "mrr@10")["mrr@10"] == 1.0


def test_negative_grades_count_as_non_relevant(pytrec_eval):
    qrels = {"q": {"a": 1, "b": 2, "neg": -1, "zero": 0}}
    for top in ("neg", "zero", "unjudged"):
        run = {"q": {top: 3.0, "a": 2.0, "b": 1.0}}
        assert_parity(pytrec_eval, qrels, run)
        got = evaluate(qrels, run, ["ndcg@3"])["ndcg@3"]
        # DCG = 1/log2(3) + 2/log2(4); IDCG = 2 + 1/log2(3); the grade -1 adds nothing.
        assert got == pytest.approx((1 / math.log2(3) + 1) / (2 + 1 / math.log2(3)))


def test_hand_computed_values():
    qrels = {"q": {"a": 1, "b": 2, "c": 0, "d": -1}}
    # trec_eval order: d (2.0), then the ties at 1.0 by docid descending: c, b, a; then e.
    run = {"q": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 2.0, "e": 0.5}}
    got = evaluate(qrels, run, ["ndcg@3", "P@3", "recall@3", "map@10", "mrr@2", "mrr@3"])
    idcg = 2 + 1 / math.log2(3)
    assert got["ndcg@3"] == pytest.approx((2 / math.log2(4)) / idcg)
    assert got["precision@3"] == pytest.approx(1 / 3)
    assert got["recall@3"] == pytest.approx(1 / 2)
    assert got["map@10"] == pytest.approx((1 / 3 + 2 / 4) / 2)
    assert got["mrr@2"] == 0.0
    assert got["mrr@3"] == pytest.approx(1 / 3)
    # P@k divides by k even when fewer than k documents were retrieved.
    assert evaluate(qrels, run, "p@100")["precision@100"] == pytest.approx(2 / 100)


# --------------------------------------------------------------------------- query selection


def test_which_queries_are_averaged():
    qrels = {
        "hit": {"a": 1},
        "miss": {"a": 1},
        "absent": {"a": 1},  # not in the run
        "no_relevant": {"a": 0},  # skipped, whatever the run says
    }
    run = {"hit": {"a": 1.0}, "miss": {"b": 1.0}, "no_relevant": {"a": 1.0}, "extra": {"a": 1.0}}
    per_query = evaluate(qrels, run, ["mrr@10"], per_query=True)
    assert per_query == {"mrr@10": {"hit": 1.0, "miss": 0.0}}
    assert evaluate(qrels, run, ["mrr@10"]) == {"mrr@10": 0.5}
    strict = evaluate(qrels, run, ["mrr@10"], per_query=True, missing_as_zero=True)
    assert strict == {"mrr@10": {"hit": 1.0, "miss": 0.0, "absent": 0.0}}
    assert evaluate(qrels, run, ["mrr@10"], missing_as_zero=True)["mrr@10"] == pytest.approx(1 / 3)


def test_no_overlap_is_an_error():
    with pytest.raises(ValueError, match="no query to evaluate"):
        evaluate({"1": {"a": 1}}, {1: {"a": 1.0}}, ["ndcg@10"])  # type: ignore[dict-item]


def test_metric_names():
    qrels, run = {"q": {"a": 1}}, {"q": {"a": 1.0}}
    got = evaluate(qrels, run, ["NDCG@10", "nDCG@10", " Recall @ 5", "P@1", "MAP@3", "MRR@1"])
    assert list(got) == ["ndcg@10", "recall@5", "precision@1", "map@3", "mrr@1"]
    assert list(evaluate(qrels, run)) == list(DEFAULT_METRICS)
    assert evaluate(qrels, run, "ndcg@10") == {"ndcg@10": 1.0}
    for bad in ("ndcg", "ndcg@0", "ndcg@-1", "bpref@10", "ndcg@1.5", ""):
        with pytest.raises(ValueError):
            evaluate(qrels, run, [bad])


def test_bad_scores_and_ids():
    with pytest.raises(ValueError, match="NaN"):
        evaluate({"q": {"a": 1}}, {"q": {"a": float("nan"), "b": 1.0}}, ["ndcg@10"])
    with pytest.raises(TypeError, match="strings"):
        evaluate({"q": {"1": 1}}, {"q": {1: 1.0}}, ["ndcg@10"])  # type: ignore[dict-item]


def test_float32_and_infinite_scores(pytrec_eval):
    rng = np.random.default_rng(7)
    scores = rng.random(50).astype(np.float32)
    scores[[3, 9]] = scores[4]  # ties survive the float32 -> float64 conversion
    run = {"q": {f"d{i}": s for i, s in enumerate(scores)}}
    run["q"]["d5"] = np.float32(np.inf)
    run["q"]["d6"] = np.float32(-np.inf)
    qrels = {"q": {"d3": 1, "d4": 2, "d6": 1, "d9": 1}}
    as_float = {"q": {d: float(s) for d, s in run["q"].items()}}
    assert evaluate(qrels, run, ALL_METRICS) == evaluate(qrels, as_float, ALL_METRICS)
    assert_parity(pytrec_eval, qrels, as_float)


def test_scifact_sized_run(pytrec_eval):
    # 300 queries x 1000 documents, SciFact's shape (timing lives in benches/, not here).
    rng = np.random.default_rng(0)
    ids = [str(i) for i in rng.choice(10**8, 5000, replace=False)]
    qrels, run = {}, {}
    for q in range(300):
        pick = rng.choice(5000, 1000, replace=False)
        run[str(q)] = {ids[j]: float(s) for j, s in zip(pick, rng.random(1000))}
        qrels[str(q)] = {ids[j]: 1 for j in rng.choice(5000, 2, replace=False)}
    assert_parity(pytrec_eval, qrels, run)


# --------------------------------------------------------------------------- real data


def pseudo_run(qrels, corpus_ids, seed: int, depth: int = 1000) -> dict[str, dict[str, float]]:
    """A deterministic fake retriever: random scores on a coarse grid (so many ties) over
    `depth` corpus documents; each relevant document is left out 20% of the time, otherwise
    placed near a random rank (skewed to the top so that the metrics are not all 0), either
    tied with the document there or just above it."""
    rng = np.random.default_rng(seed)
    run = {}
    for qid in sorted(qrels):
        pick = rng.choice(len(corpus_ids), size=min(depth, len(corpus_ids)), replace=False)
        scores = rng.integers(0, 200, size=len(pick)) / 10.0
        docs = {corpus_ids[j]: float(s) for j, s in zip(pick, scores)}
        ranked = sorted(docs.values(), reverse=True)
        for d in qrels[qid]:
            docs.pop(d, None)
            if rng.random() < 0.8:
                at = ranked[min(int(rng.exponential(15)), len(ranked) - 1)]
                docs[d] = at if rng.random() < 0.6 else at + 0.05
        run[qid] = docs
    return run


@pytest.mark.parametrize(("name", "split"), [("scifact", "test"), ("stard", "dev")])
def test_parity_real_qrels(pytrec_eval, name, split):
    ds = load_beir(_need_data(name), split)
    run = pseudo_run(ds.qrels, sorted(ds.corpus), seed=42)
    assert_parity(pytrec_eval, ds.qrels, run)


@pytest.mark.parametrize(
    ("name", "split", "n_docs", "n_queries", "n_pairs"),
    [("scifact", "test", 5183, 300, 339), ("stard", "dev", 1445, 308, 512)],
)
def test_load_beir_real(name, split, n_docs, n_queries, n_pairs):
    ds = load_beir(_need_data(name), split)
    assert isinstance(ds, BeirDataset)
    assert len(ds.corpus) == n_docs
    assert len(ds.qrels) == n_queries
    assert sum(len(d) for d in ds.qrels.values()) == n_pairs
    assert list(ds.queries) == list(ds.qrels)  # only the judged queries, in qrels order
    assert all(isinstance(t, str) and t for t in ds.queries.values())
    doc = next(iter(ds.corpus.values()))
    assert set(doc) == {"title", "text"} and isinstance(doc["text"], str)
    assert all(isinstance(q, str) for q in ds.qrels)
    assert f"{n_docs} docs" in repr(ds)
    with pytest.raises(AttributeError):
        ds.corpus = {}  # type: ignore[misc]  # frozen


def test_load_beir_real_queries_match_queries_file():
    path = _need_data("scifact")
    ds = load_beir(path, "test")
    all_queries = load_queries(path / "queries.jsonl")
    assert len(all_queries) == 1109
    assert all(all_queries[q] == t for q, t in ds.queries.items())
    assert load_qrels(path / "qrels" / "test.tsv") == ds.qrels


# --------------------------------------------------------------------------- BEIR readers


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _mini_beir(root: Path) -> Path:
    _write(
        root / "corpus.jsonl",
        '{"_id": "d1", "title": "T1", "text": "one"}\n'
        '{"_id": "007", "text": "no title", "metadata": {}}\n'
        "\n"
        '{"_id": 12, "title": null, "text": "numeric id"}\n',
    )
    _write(
        root / "queries.jsonl",
        '{"_id": "1", "text": "first"}\n'
        '{"_id": "2", "text": "second"}\n'
        '{"_id": "3", "text": "x"}\n',
    )
    _write(
        root / "qrels" / "test.tsv", "query-id\tcorpus-id\tscore\n1\td1\t1\n2\t007\t2\n2\t12\t0\n"
    )
    return root


def test_load_beir_small(tmp_path):
    ds = load_beir(_mini_beir(tmp_path))
    assert ds.corpus == {
        "d1": {"title": "T1", "text": "one"},
        "007": {"title": "", "text": "no title"},
        "12": {"title": "", "text": "numeric id"},
    }
    assert ds.queries == {"1": "first", "2": "second"}
    assert ds.qrels == {"1": {"d1": 1}, "2": {"007": 2, "12": 0}}
    with pytest.raises(FileNotFoundError, match=r"dev.*available: test"):
        load_beir(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        load_beir(tmp_path / "nope")


def test_load_beir_gzipped_and_crlf(tmp_path):
    root = _mini_beir(tmp_path / "plain")
    gz = tmp_path / "gz"
    (gz / "qrels").mkdir(parents=True)
    for rel in ("corpus.jsonl", "queries.jsonl"):
        with gzip.open(gz / (rel + ".gz"), "wt", encoding="utf-8") as f:
            f.write((root / rel).read_text(encoding="utf-8"))
    (gz / "qrels" / "test.tsv").write_bytes(
        (root / "qrels" / "test.tsv").read_bytes().replace(b"\n", b"\r\n")
    )
    assert load_beir(gz) == load_beir(root)


def test_load_qrels_without_header_and_whitespace(tmp_path):
    p = _write(tmp_path / "q.tsv", "1\td1\t1\n1 d2 2\n2\td1\t1.0\n")
    assert load_qrels(p) == {"1": {"d1": 1, "d2": 2}, "2": {"d1": 1}}
    assert load_qrels(_write(tmp_path / "h.tsv", "query-id\tcorpus-id\tscore\n")) == {}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("query-id\tcorpus-id\tscore\n1\td1\n", r"q\.tsv:2: expected 3 columns"),
        ("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\thigh\n", r"q\.tsv:3: score must be"),
        ("1\td1\t1\n1\td1\t2\n", r"q\.tsv:2: pair \('1', 'd1'\) judged 1 earlier and 2"),
        ("1\td1\t1.5\n", r"q\.tsv:1: score must be an integer"),
        ("1\td1\t1\t0\n", r"q\.tsv:1: expected 3 columns"),
    ],
)
def test_load_qrels_errors(tmp_path, text, match):
    p = _write(tmp_path / "q.tsv", text)
    with pytest.raises(ValueError, match=match):
        load_qrels(p)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n', r"c\.jsonl:2: invalid JSON"),
        ('{"_id": "a", "text": "x"}\n["a"]\n', r"c\.jsonl:2: expected a JSON object"),
        ('{"text": "x"}\n', r"c\.jsonl:1: missing '_id'"),
        ('{"_id": "a"}\n', r"c\.jsonl:1: missing 'text'"),
        ('{"_id": "a", "text": 3}\n', r"c\.jsonl:1: 'text' must be a string"),
        ('{"_id": ["a"], "text": "x"}\n', r"c\.jsonl:1: '_id' must be a string"),
        ('{"_id": "a", "text": "x"}\n\n{"_id": "a", "text": "y"}\n', r"c\.jsonl:3: duplicate"),
    ],
)
def test_load_corpus_and_queries_errors(tmp_path, text, match):
    p = _write(tmp_path / "c.jsonl", text)
    with pytest.raises(ValueError, match=match):
        load_corpus(p)
    with pytest.raises(ValueError, match=match):  # queries follow the same rules
        load_queries(p)


def test_load_queries_tsv(tmp_path):
    p = _write(tmp_path / "queries.tsv", "1\twhat is x\n2\ttab\tinside\n")
    assert load_queries(p) == {"1": "what is x", "2": "tab\tinside"}
    with pytest.raises(ValueError, match=r"bad\.tsv:1: expected"):
        load_queries(_write(tmp_path / "bad.tsv", "no tab here\n"))


def test_missing_files(tmp_path):
    for loader in (load_corpus, load_queries, load_qrels, read_run, read_qrels_trec):
        with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
            loader(tmp_path / "missing.txt")


def test_load_beir_query_missing_from_queries_file(tmp_path):
    root = _mini_beir(tmp_path)
    _write(root / "qrels" / "test.tsv", "1\td1\t1\n42\td1\t1\n")
    with pytest.raises(ValueError, match=r"1 judged queries are not in queries.jsonl.*'42'"):
        load_beir(root)


# --------------------------------------------------------------------------- TREC files


def test_write_read_run_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    run = {
        "q2": {"b": 1.0, "a": 1.0, "c": 2.5, "z": -0.0, "文": float(np.float32(0.1))},
        "q1": {f"d{i}": float(s) for i, s in enumerate(rng.normal(size=200))},
        "q3": {},
        "q4": {"x": math.inf, "y": 1e-300, "w": 0.1 + 0.2},
    }
    path = tmp_path / "run.trec"
    write_run(path, run, tag="test-run")
    back = read_run(path)
    assert back == {q: d for q, d in run.items() if d}  # a query with no documents vanishes
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[:5] == [
        "q2 Q0 c 1 2.5 test-run",
        "q2 Q0 a 2 1.0 test-run",  # ties by docid ascending in the file
        "q2 Q0 b 3 1.0 test-run",
        f"q2 Q0 文 4 {float(np.float32(0.1))!r} test-run",
        "q2 Q0 z 5 -0.0 test-run",
    ]
    q1 = [line.split() for line in lines if line.startswith("q1 ")]
    assert [int(p[3]) for p in q1] == list(range(1, 201))
    assert [float(p[4]) for p in q1] == sorted((float(p[4]) for p in q1), reverse=True)
    # Evaluation of the file equals evaluation of the dict.
    qrels = {"q1": {"d3": 1, "d50": 2}, "q2": {"a": 1}}
    assert evaluate(qrels, back, ALL_METRICS) == evaluate(qrels, run, ALL_METRICS)
    gz = tmp_path / "run.trec.gz"
    write_run(gz, run)
    assert read_run(gz) == back
    with gzip.open(gz, "rt", encoding="utf-8") as f:
        assert f.readline().endswith(" densparse\n")


@pytest.mark.parametrize(
    ("run", "tag", "error", "match"),
    [
        ({"q 1": {"a": 1.0}}, "t", ValueError, "query id 'q 1'"),
        ({"q": {"a\tb": 1.0}}, "t", ValueError, "document id"),
        ({"q": {"": 1.0}}, "t", ValueError, "empty"),
        ({"q": {"a": 1.0}}, "my tag", ValueError, "tag"),
        ({"q": {"a": float("nan")}}, "t", ValueError, "NaN"),
        ({"q": {1: 1.0}}, "t", TypeError, "document id must be a str"),
    ],
)
def test_write_run_errors(tmp_path, run, tag, error, match):
    with pytest.raises(error, match=match):
        write_run(tmp_path / "r.trec", run, tag=tag)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("q Q0 d 1 1.0 t\nq Q0 e 2 0.5\n", r"r\.trec:2: expected 6 columns"),
        ("q Q0 d 1 high t\n", r"r\.trec:1: score must be a number"),
        ("q Q0 d first 1.0 t\n", r"r\.trec:1: rank must be an integer"),
        ("q Q0 d 1 1.0 t\n\nq Q0 d 2 0.5 t\n", r"r\.trec:3: document 'd' repeated"),
        ("q Q0 d 1 nan t\n", r"r\.trec:1: score is NaN"),
    ],
)
def test_read_run_errors(tmp_path, text, match):
    p = _write(tmp_path / "r.trec", text)
    with pytest.raises(ValueError, match=match):
        read_run(p)


def test_read_qrels_trec(tmp_path, pytrec_eval):
    p = _write(tmp_path / "qrels.txt", "1 0 d1 1\n1 0 d2 0\n\n2 0 d1 2\n2 0 d3 -1\n1 0 d1 1\n")
    qrels = read_qrels_trec(p)
    assert qrels == {"1": {"d1": 1, "d2": 0}, "2": {"d1": 2, "d3": -1}}
    # pytrec_eval's own parser agrees (it wants no blank or repeated lines).
    clean = _write(tmp_path / "clean.txt", "1 0 d1 1\n1 0 d2 0\n2 0 d1 2\n2 0 d3 -1\n")
    with clean.open(encoding="utf-8") as f:
        assert pytrec_eval.parse_qrel(f) == read_qrels_trec(clean) == qrels
    for text, match in [
        ("1 0 d1\n", r"qrels\.txt:1: expected 4 columns"),
        ("1 0 d1 yes\n", r"qrels\.txt:1: relevance must be an integer"),
        ("1 0 d1 1\n1 0 d1 0\n", r"qrels\.txt:2: pair"),
    ]:
        with pytest.raises(ValueError, match=match):
            read_qrels_trec(_write(tmp_path / "qrels.txt", text))


def test_read_run_matches_pytrec_eval_parser(tmp_path, pytrec_eval):
    run = {"q1": {"a": 0.5, "b": 1.25}, "q2": {"c": -3.0}}
    write_run(tmp_path / "r.trec", run)
    with open(tmp_path / "r.trec", encoding="utf-8") as f:
        assert pytrec_eval.parse_run(f) == read_run(tmp_path / "r.trec") == run


def test_readers_accept_json_dumped_ids(tmp_path):
    # Ids that look like numbers stay strings, leading zeros included.
    _write(tmp_path / "c.jsonl", json.dumps({"_id": "0012", "text": "x"}) + "\n")
    assert list(load_corpus(tmp_path / "c.jsonl")) == ["0012"]
    _write(tmp_path / "q.tsv", "0012\t0034\t1\n")
    assert load_qrels(tmp_path / "q.tsv") == {"0012": {"0034": 1}}
