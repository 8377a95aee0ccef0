#!/usr/bin/env python3
"""Analysis against its references, side by side in one run: Chinese segmentation speed
(jieba, rjieba, densparse) and English BM25 quality (bm25s + PyStemmer vs densparse's
analyzers) on the BEIR-format sets in the shared data folder.

    python3 benches/bench_analysis.py                  # both sections
    python3 benches/bench_analysis.py --sections seg   # or: quality

Results go to ``--out`` (benches/RESULTS.md) between ``<!-- bench_analysis:start -->`` and
``<!-- bench_analysis:end -->``; the rest of that file is kept, and so is a section of that
block not run this time. Timings are medians of ``--reps`` rounds (segmentation: each round
times every library once, in turn); nothing is asserted (tests/test_quality.py and
tests/test_analysis.py do).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
START, END = "<!-- bench_analysis:start -->", "<!-- bench_analysis:end -->"
SEG_TITLE = "### Chinese segmentation (jieba precise mode, HMM on, one thread)"
QUALITY_TITLE = "### BM25 quality by analyzer (BEIR-format sets in the shared data folder)"
TITLES = {"seg": SEG_TITLE, "quality": QUALITY_TITLE}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def read_jsonl(p: Path) -> list[dict]:
    with open(p, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# --------------------------------------------------------------------------- segmentation
def section_seg(args: argparse.Namespace) -> str:
    import jieba
    import rjieba

    from densparse import Analyzer

    jieba.setLogLevel(60)
    d = args.data_dir / "stard"
    base = []
    for name in ("corpus.jsonl", "queries.jsonl"):
        for r in read_jsonl(d / name):
            base += [r.get("title", ""), r["text"]]
    base = [t for t in base if t]
    mb = sum(len(t.encode()) for t in base) / 1e6
    big = base * max(1, round(args.seg_mb / mb))
    big_mb = mb * len(big) / len(base)

    def seg() -> Analyzer:
        return Analyzer(
            language="zh",
            mode="default",
            hmm=True,
            stopwords=None,
            lowercase=False,
            keep_punctuation=True,
        )

    an = seg()
    jieba.initialize()
    for t in base[:300]:
        jieba.lcut(t)
        rjieba.cut(t)
        an.tokenize(t)
    fresh = [seg() for _ in range(args.reps)]

    def copies() -> list[str]:
        # New str objects: CPython keeps a str's UTF-8 once an extension asks for
        # it, so a pass over strs already seen would skip that work.
        return [t.encode().decode() for t in base]

    cold_texts: dict[str, list[str]] = {}

    def dens_cold() -> None:
        tok = fresh.pop().tokenize
        for t in cold_texts["d"]:
            tok(t)

    def rjieba_cold() -> None:
        for t in cold_texts["r"]:
            rjieba.cut(t)

    runs = [
        ("jieba.lcut (HMM), per text", mb, lambda: [jieba.lcut(t) for t in base]),
        ("rjieba.cut (hmm=True), per text", big_mb, lambda: [rjieba.cut(t) for t in big]),
        ("densparse tokenize, per text", big_mb, lambda: [an.tokenize(t) for t in big]),
        ("rjieba.cut, one pass over distinct texts", mb, rjieba_cold),
        ("densparse tokenize, fresh analyzer, one pass", mb, dens_cold),
    ]
    # Rounds of every run in turn: load from other jobs on the machine then
    # weighs on all of them alike instead of on whichever ran during a burst.
    times: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for r in range(args.reps):
        log(f"seg: round {r + 1} of {args.reps}")
        cold_texts.update(d=copies(), r=copies())
        for name, _, fn in runs:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    rates = {}
    rows = []
    for name, size, _ in runs:
        s = statistics.median(times[name])
        rates[name] = size / s
        rows.append([name, f"{size:.2f}", str(args.reps), f"{s:.3f}", f"{size / s:.2f}"])
    load = os.getloadavg()
    j = [[w for w in jieba.lcut(t) if w.strip()] for t in base]
    dd = [an.tokenize(t) for t in base]
    ndiff = sum(a != b for a, b in zip(dd, j))
    per = rates["densparse tokenize, per text"]
    cold = rates["densparse tokenize, fresh analyzer, one pass"]
    md = [
        SEG_TITLE,
        "",
        f"Command: `python3 benches/bench_analysis.py --sections seg --reps {args.reps}`. "
        "Input: STARD titles, article texts and questions "
        f"({len(base):,} distinct texts, {mb:.2f} MB), "
        f"repeated to {big_mb:.2f} MB for rjieba and densparse; one call per text. densparse: "
        '`Analyzer(language="zh", mode="default", hmm=True, stopwords=None, lowercase=False, '
        "keep_punctuation=True)`. The runs take turns, one round of all five per rep; "
        "the one-pass runs get new str objects each round. Load average during the run: "
        f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (2-core machine shared with other jobs).",
        "",
        md_table(["Run", "MB", "reps", "median s", "MB/s"], rows),
        "",
        f"- densparse per text vs jieba: **{per / rates['jieba.lcut (HMM), per text']:.1f}x** "
        f"(goal 40x); vs rjieba: **{per / rates['rjieba.cut (hmm=True), per text']:.2f}x** "
        "(goal 1.5x)",
        f"- one pass over distinct texts, fresh analyzer: vs rjieba **"
        f"{cold / rates['rjieba.cut, one pass over distinct texts']:.2f}x**, vs jieba "
        f"**{cold / rates['jieba.lcut (HMM), per text']:.1f}x**",
        f"- texts whose densparse tokens differ from jieba's: {ndiff} of {len(base):,}",
    ]
    return "\n".join(md)


# --------------------------------------------------------------------------- quality
def section_quality(args: argparse.Namespace) -> str:
    import bm25s
    import jieba
    import Stemmer

    from densparse import BM25, Analyzer
    from densparse.eval import evaluate, load_beir

    jieba.setLogLevel(60)
    stem = Stemmer.Stemmer("english")
    sets = [("scifact", "test", "en"), ("scifact", "train", "en"), ("stard", "dev", "zh")]
    rows = []
    for name, split, lang in sets:
        ds = load_beir(args.data_dir / name, split=split)
        ids = list(ds.corpus)
        if lang == "en":
            texts = [f"{ds.corpus[i]['title']} {ds.corpus[i]['text']}" for i in ids]
        else:
            texts = [ds.corpus[i]["text"] for i in ids]
        qids = list(ds.queries)
        queries = [ds.queries[q] for q in qids]

        def score(hit_ids, hit_scores, ids=ids, qids=qids, ds=ds) -> dict:
            run = {
                q: {ids[int(i)]: float(s) for i, s in zip(hit_ids[n], hit_scores[n])}
                for n, q in enumerate(qids)
            }
            return evaluate(ds.qrels, run, metrics=("ndcg@10", "recall@100"))

        if lang == "en":
            ct = bm25s.tokenize(texts, stopwords="en", stemmer=stem, show_progress=False)
            r = bm25s.BM25()
            r.index(ct, show_progress=False)
            qt = bm25s.tokenize(queries, stopwords="en", stemmer=stem, show_progress=False)
            inv = {v: k for k, v in qt.vocab.items()}
            qtok = [[inv[i] for i in q] for q in qt.ids]
            ref_name = "bm25s 0.3.16 + PyStemmer (stopwords en)"
        else:
            ctok = [jieba.lcut_for_search(t) for t in texts]
            r = bm25s.BM25()
            r.index(ctok, show_progress=False)
            qtok = [jieba.lcut_for_search(q) for q in queries]
            ref_name = "bm25s 0.3.16 on jieba cut_for_search"
        res, sc = r.retrieve(qtok, k=100, show_progress=False, n_threads=1)
        ref = score(res, sc)
        rows.append(
            [f"{name} {split}", ref_name, f"{ref['ndcg@10']:.4f}", f"{ref['recall@100']:.4f}", ""]
        )
        variants = (
            [
                ("default", {}),
                ("bm25s", {"tokenizer": "bm25s"}),
                ("uax29", {"tokenizer": "uax29"}),
                ("before", {"tokenizer": "uax29", "stemmer": "english_legacy"}),
            ]
            if lang == "en"
            else [("default", {})]
        )
        for vname, kw in variants:
            bm = BM25(analyzer=Analyzer(language=lang, **kw)).index(texts)
            hi, hs = bm.search(queries, k=100)
            m = score(hi, hs)
            rows.append(
                [
                    f"{name} {split}",
                    f'densparse Analyzer(language="{lang}"'
                    + "".join(f', {k}="{v}"' for k, v in kw.items())
                    + ")"
                    + (" (densparse before)" if vname == "before" else ""),
                    f"{m['ndcg@10']:.4f}",
                    f"{m['recall@100']:.4f}",
                    f"{m['ndcg@10'] - ref['ndcg@10']:+.4f}",
                ]
            )
            log(f"quality: {name} {split} {vname}: {m}")
    md = [
        QUALITY_TITLE,
        "",
        f"Command: `python3 benches/bench_analysis.py --sections quality --reps {args.reps}`. "
        "BM25 Lucene variant, k1 1.2, b 0.75 in both libraries; SciFact documents are title + text "
        "(BEIR convention), STARD documents the article text. No NFCorpus-style set exists in the "
        "shared data folder, so SciFact's train split (809 queries) serves as a second English "
        "set; STARD (Chinese) shows the English changes leave Chinese analysis alone.",
        "",
        md_table(["Set", "System", "nDCG@10", "Recall@100", "vs reference"], rows),
    ]
    return "\n".join(md)


def old_section(block: str, title: str) -> str:
    """The section under `title` in a previous results block, up to the next heading."""
    if title not in block:
        return ""
    body = block.split(title, 1)[1]
    end = min((i for i in (body.find("\n### "), body.find("\n## ")) if i >= 0), default=len(body))
    return (title + body[:end]).rstrip()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sections", default="seg,quality")
    p.add_argument("--seg-mb", type=float, default=3.0, help="MB of text for densparse and rjieba")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "RESULTS.md")
    args = p.parse_args()
    import densparse

    text = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
    old = text.split(START, 1)[1].split(END, 1)[0] if START in text and END in text else ""
    # Sections not run this time are kept as the file has them.
    sections = {key: old_section(old, title) for key, title in TITLES.items()}
    for s in args.sections.split(","):
        sections[s] = {"seg": section_seg, "quality": section_quality}[s](args)
    parts = [
        "## Analysis (benches/bench_analysis.py)",
        "",
        f"- Machine: {platform.machine()}, {os.cpu_count()} cores; "
        f"Python {platform.python_version()}; densparse {densparse.__version__} "
        "(each section names the command that made it)",
        "",
    ]
    parts += [sections[k] + "\n" for k in TITLES if sections[k]]
    block = START + "\n" + "\n".join(parts).rstrip() + "\n" + END
    print(block)
    if START in text and END in text:
        a, rest = text.split(START, 1)
        text = a + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
