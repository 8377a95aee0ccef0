"""English analysis: Snowball 3 stems equal PyStemmer's, bm25s-identical splitting, the default."""

from __future__ import annotations

import random
import re

import pytest

from conftest import DATA, read_jsonl
from densparse import Analyzer

Stemmer = pytest.importorskip("Stemmer", reason="PyStemmer is the reference for stems")
bm25s = pytest.importorskip("bm25s", reason="bm25s is the reference for the bm25s tokenizer")

SUFFIXES = [
    "s",
    "es",
    "ies",
    "ied",
    "ed",
    "edly",
    "ing",
    "ingly",
    "eed",
    "eedly",
    "ly",
    "ness",
    "ational",
    "tional",
    "ation",
    "ator",
    "ization",
    "izer",
    "alism",
    "aliti",
    "alli",
    "fulness",
    "ousli",
    "ousness",
    "iveness",
    "iviti",
    "biliti",
    "bli",
    "abli",
    "enci",
    "anci",
    "entli",
    "ogist",
    "ogi",
    "fulli",
    "lessli",
    "li",
    "alize",
    "icate",
    "iciti",
    "ical",
    "ful",
    "ative",
    "al",
    "ance",
    "ence",
    "er",
    "ic",
    "able",
    "ible",
    "ant",
    "ement",
    "ment",
    "ent",
    "ism",
    "ate",
    "iti",
    "ous",
    "ive",
    "ize",
    "ion",
    "sion",
    "tion",
    "e",
    "l",
    "ll",
    "y",
    "ys",
    "yed",
    "ying",
    "at",
    "bl",
    "iz",
    "bb",
    "dd",
    "ff",
    "gg",
    "mm",
    "nn",
    "pp",
    "rr",
    "tt",
]
STEMS = [
    "gener",
    "commun",
    "arsen",
    "past",
    "univers",
    "later",
    "emerg",
    "organ",
    "inter",
    "proc",
    "exc",
    "succ",
    "sky",
    "ski",
    "news",
    "howe",
    "atlas",
    "cosmos",
    "bias",
    "andes",
    "idl",
    "gentl",
    "ugl",
    "earl",
    "onl",
    "singl",
    "dy",
    "ly",
    "ty",
    "vy",
    "inn",
    "out",
    "cann",
    "herr",
    "earr",
    "even",
    "hop",
    "add",
    "egg",
    "luxur",
    "rat",
    "sing",
    "fil",
    "hope",
    "bleed",
    "agree",
    "nation",
    "condit",
    "relat",
    "valu",
    "digit",
    "happ",
    "cry",
    "say",
    "play",
    "enjoy",
    "yell",
    "yes",
    "ye",
    "y",
    "eye",
    "obey",
    "bus",
    "gas",
    "kiwi",
    "cares",
    "agre",
    "feed",
    "need",
    "elect",
    "rational",
    "sensit",
    "formal",
    "troubl",
    "gen",
    "generous",
    "radic",
    "fortun",
    "conform",
    "electr",
]


def reference_stems(words: list[str]) -> list[str]:
    s = Stemmer.Stemmer("english")
    return [s.stemWord(w) for w in words]


def our_stems(words: list[str]) -> list[str]:
    # bm25s splitting, no stopwords, no lowercasing: each word comes back as its stem.
    a = Analyzer(
        language="en", stopwords=None, stemmer="english", lowercase=False, tokenizer="bm25s"
    )
    out = a.tokenize_batch(words)
    assert all(len(t) == 1 for t in out)
    return [t[0] for t in out]


def generated_words(n_random: int = 40_000, seed: int = 7) -> set[str]:
    rng = random.Random(seed)
    words = {st + suf for st in STEMS for suf in SUFFIXES}
    words |= {st + a + b for st in STEMS[:40] for a in SUFFIXES[:30] for b in ("s", "ly", "ness")}
    # Pronounceable-ish strings: vowel/consonant patterns, y's between vowels,
    # doubled consonants, a few non-ASCII letters and capital Y.
    vowels, cons = "aeiouy", "bcdfghjklmnpqrstvwxzyy"
    for _ in range(n_random):
        n = rng.randint(2, 12)
        w = "".join(rng.choice(vowels if rng.random() < 0.4 else cons) for _ in range(n))
        r = rng.random()
        if r < 0.3:
            w += rng.choice(SUFFIXES)
        elif r < 0.33:
            w = w[: n // 2] + rng.choice("éüñçøY") + w[n // 2 :]
        words.add(w)
    return {w for w in words if len(w) >= 2}


def corpus_words() -> set[str]:
    words: set[str] = set()
    for name in ("scifact", "stard"):
        d = DATA / name
        if not d.exists():
            continue
        for f in ("corpus.jsonl", "queries.jsonl"):
            for r in read_jsonl(d / f):
                text = f"{r.get('title', '')} {r['text']}".lower()
                words.update(re.findall(r"(?u)\b\w\w+\b", text))
    return words


def test_stems_equal_pystemmer_on_a_large_word_list():
    words = sorted(generated_words() | corpus_words())
    assert len(words) >= 50_000
    want = reference_stems(words)
    got = our_stems(words)
    diff = [(w, g, r) for w, g, r in zip(words, got, want) if g != r]
    assert not diff, f"{len(diff)} differences, first: {diff[:20]}"


def test_current_snowball_forms():
    words = ["organism", "internal", "university", "lateral", "generously", "skies", "dying"]
    assert our_stems(words) == [
        "organism",
        "internal",
        "universiti",
        "lateral",
        "generous",
        "sky",
        "die",
    ]
    # Apostrophes reach the stemmer only through UAX #29 words.
    a = Analyzer(language="en", stopwords=None, tokenizer="uax29")
    assert a.tokenize("dog's dogs' it's") == reference_stems(["dog's", "dogs'", "it's"])


def test_stems_with_apostrophes_equal_pystemmer():
    # UAX #29 keeps an apostrophe between letters (`dog's`, `o'clock`), so
    # Step 1a's `'s` handling and the prelude's apostrophe reach the stemmer.
    rng = random.Random(3)
    base = sorted(generated_words(n_random=3000, seed=11))
    tails = ["s", "t", "ll", "re", "ve", "d", "sy", "ies", "clock"]
    words = sorted({w + "'" + rng.choice(tails) for w in base} | {"o'" + w for w in base[:2000]})
    a = Analyzer(language="en", stopwords=None, lowercase=False, tokenizer="uax29")
    got = a.tokenize_batch(words)
    assert all(len(t) == 1 for t in got)
    want = reference_stems(words)
    diff = [(w, g[0], r) for w, g, r in zip(words, got, want) if g[0] != r]
    assert len(words) > 10_000 and not diff, diff[:20]


def bm25s_tokens(texts: list[str]) -> list[list[str]]:
    stemmer = Stemmer.Stemmer("english")
    tok = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    inv = {i: w for w, i in tok.vocab.items()}
    return [[inv[i] for i in ids] for ids in tok.ids]


TRICKY = [
    "It's the U.S. organism, i.e. 2.5 or 1,000 don't",
    "T-cell counts (3,000.5 per µl) weren't e.g. x_y __init__ café-au-lait naïve Ångström",
    "The RUNNING dogs of Europe; a cat, an owl: 42 p<0.05 α-synuclein β2 ½ ²",
    "",
    "a b c",
]


def test_bm25s_tokenizer_equals_bm25s():
    texts = list(TRICKY)
    p = DATA / "scifact" / "corpus.jsonl"
    if p.exists():
        texts += [f"{r['title']} {r['text']}" for r in read_jsonl(p)[:1500]]
    a = Analyzer(language="en", tokenizer="bm25s")
    want = bm25s_tokens(texts)
    got = a.tokenize_batch(texts)
    for t, g, w in zip(texts, got, want):
        assert g == w, t[:100]


def test_default_tokenizer():
    a = Analyzer(language="en")
    assert a.config["tokenizer"] == "default"
    # `It's` -> `it` (a stopword, dropped after splitting) + `s`; acronyms and
    # decimals joined; thousands split as bm25s splits them; one letter dropped.
    assert a.tokenize("It's the U.S. organism, i.e. 2.5 or 1,000 don't") == [
        "us",
        "organism",
        "ie",
        "2.5",
        "000",
        "don",
    ]
    assert Analyzer(language="en", tokenizer="uax29").tokenize("U.S. 2.5 1,000") == [
        "u.",
        "2.5",
        "1,000",
    ]
    with pytest.raises(ValueError, match="tokenizer"):
        Analyzer(tokenizer="whitespace")


def test_old_index_config_keeps_its_analysis(tmp_path):
    from densparse import BM25
    from densparse.bm25 import _analyzer_from_config

    cfg = dict(Analyzer(language="en").config)
    assert _analyzer_from_config(cfg).tokenize("organisms, U.S.") == ["organism", "us"]
    # An index saved before the tokenizer setting: UAX #29 words, the older Snowball English.
    del cfg["tokenizer"]
    old = _analyzer_from_config(cfg)
    assert old.config["tokenizer"] == "uax29" and old.config["stemmer"] == "english_legacy"
    assert old.tokenize("organisms, U.S.") == ["organ", "u."]
    bm = BM25(analyzer=Analyzer(language="en")).index(["organisms in the U.S.", "cats"])
    bm.save(tmp_path / "i")
    ids, _ = BM25.load(tmp_path / "i").search(["organism us"], k=1)
    assert ids[0][0] == 0
