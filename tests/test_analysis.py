"""Analysis: jieba parity, English pipeline, mixed text, keywords, dictionaries."""

from __future__ import annotations

import re
import threading

import pytest

import densparse
from densparse import Analyzer

jieba = pytest.importorskip(
    "jieba", reason="jieba is the reference for segmentation (pip install jieba)"
)
jieba.setLogLevel(60)


NEWS = (
    "今天纽约的天气真好啊，京华大酒店的张尧经理吃了一只北京烤鸭。"
    "后天纽约的天气不好，昨天纽约的天气也不好，北京烤鸭真好吃"
)


def jieba_ref(text: str, mode: str, hmm: bool) -> list[str]:
    if mode == "search":
        toks = jieba.lcut_for_search(text, HMM=hmm)
    elif mode == "all":
        toks = jieba.lcut(text, cut_all=True)
    else:
        toks = jieba.lcut(text, HMM=hmm)
    return [t for t in toks if t.strip()]


def segmenter(mode: str, hmm: bool) -> Analyzer:
    return Analyzer(
        language="zh", mode=mode, hmm=hmm, stopwords=None, lowercase=False, keep_punctuation=True
    )


TRICKY = [
    "我来到北京清华大学",
    "版本3.6.3发布了，WES-5.4.5型号",
    "COVID-19疫情期间，x86_64架构和co-operation",
    "增长50%的利润，C++和C#都是语言，a_b_c变量名",
    "访问http://a.b/c?d=1&e=2网站，邮箱abc@x.com联系",
    "３．５万元，Ｈｅｌｌｏ世界，䶮是一个字，𠮷野家",
    "我爱北京天安门\r\n南京市长江大桥  空格\t制表",
    "U.S.A.和U.K.，12.5.6.7版本，-1.5%增长",
    "小明硕士毕业于中国科学院计算所，后在日本京都大学深造",
]


@pytest.mark.parametrize(
    "mode,hmm",
    [("default", True), ("default", False), ("search", True), ("search", False), ("all", False)],
)
def test_jieba_parity_tricky(mode, hmm):
    a = segmenter(mode, hmm)
    for t in TRICKY:
        assert a.tokenize(t) == jieba_ref(t, mode, hmm), t


@pytest.mark.parametrize(
    "mode,hmm", [("default", True), ("default", False), ("search", True), ("all", False)]
)
def test_jieba_parity_stard(stard_texts, mode, hmm):
    a = segmenter(mode, hmm)
    got = a.tokenize_batch(stard_texts)
    n_tokens = 0
    for text, toks in zip(stard_texts, got):
        ref = jieba_ref(text, mode, hmm)
        n_tokens += len(ref)
        assert toks == ref, text[:80]
    assert n_tokens > 100_000


def test_hmm_near_tie_as_jieba():
    # The two best HMM paths of 常在较 differ by 1.5e-7 in log probability: only
    # Python's full-precision tables (not jieba-rs's 6-decimal ones) pick S S S.
    for mode in ("default", "search"):
        a = segmenter(mode, True)
        for t in ["常在较陡峭的", "山路常在较陡峭的地方转弯"]:
            assert a.tokenize(t) == jieba_ref(t, mode, True), t
    assert segmenter("default", True).tokenize("常在较陡峭的") == ["常", "在", "较", "陡峭", "的"]


def test_embedded_hmm_tables_are_pythons():
    # The HMM tables compiled into densparse must be jieba's floats bit for bit:
    # near-ties (above) depend on it. The file is parsed as jieba-rs parses it.
    from pathlib import Path

    from jieba.finalseg.prob_emit import P as emit
    from jieba.finalseg.prob_start import P as start
    from jieba.finalseg.prob_trans import P as trans

    path = Path(__file__).resolve().parent.parent / "rust/core/src/analysis/jieba_hmm.model"
    lines = [
        x for x in path.read_text(encoding="utf-8").splitlines() if x and not x.startswith("#")
    ]
    states = "BEMS"  # jieba-rs's state order
    assert [float(v) for v in lines[0].split()] == [start[s] for s in states]
    for i, a in enumerate(states):
        row = [float(v) for v in lines[1 + i].split()]
        assert row == [trans[a].get(b, -3.14e100) for b in states]
    for i, s_ in enumerate(states):
        pairs = dict(p.rsplit(":", 1) for p in lines[5 + i].split(","))
        assert {c: float(v) for c, v in pairs.items()} == emit[s_]


def random_han_strings(n: int, seed: int = 15) -> list[str]:
    import random

    jieba.initialize()
    # The 3,000 most frequent one-character words of jieba's dictionary: most
    # random strings of them are unknown words, cut by the HMM.
    singles = sorted(
        (
            w
            for w, f in jieba.dt.FREQ.items()
            if len(w) == 1 and f > 0 and "\u4e00" <= w <= "\u9fd5"
        ),
        key=lambda w: (-jieba.dt.FREQ[w], w),
    )[:3000]
    rng = random.Random(seed)
    return ["".join(rng.choices(singles, k=rng.randint(2, 12))) for _ in range(n)]


def test_jieba_parity_random_han_strings():
    texts = random_han_strings(200_000)
    a = segmenter("default", True)
    got = a.tokenize_batch(texts)
    diff = [t for t, g in zip(texts, got) if g != jieba_ref(t, "default", True)]
    assert not diff, f"{len(diff)} of {len(texts)} differ, e.g. {diff[:5]}"


def test_english_pipeline():
    a = Analyzer(language="en")
    assert a.tokenize("The Running dogs of Europe, and a cat!") == ["run", "dog", "europ", "cat"]
    assert Analyzer(language="en", stemmer=None, stopwords=None).tokenize("The Dogs") == [
        "the",
        "dogs",
    ]
    assert Analyzer(language="en", stopwords=["dog"], stemmer=None).tokenize("dog cat") == ["cat"]
    assert Analyzer(language="en", stemmer="french").tokenize("continuellement") == ["continuel"]


def test_mixed_text_gives_tokens_for_every_part():
    toks = Analyzer().tokenize("Python 3.11 的新特性: GPU显存不足 when running 2024年")
    for t in ["python", "3.11", "特性", "gpu", "显存", "不足", "run", "2024", "年"]:
        assert t in toks, (t, toks)


def test_char_ngrams_and_defaults():
    zh = Analyzer(language="zh")
    toks = zh.tokenize("房东不退押金")
    assert "押金" in toks and "押" in toks and "东不" in toks
    assert Analyzer(language="zh", char_ngrams=None).tokenize("房东不退押金") == [
        "房东",
        "退",
        "押金",
    ]
    assert zh.config["char_ngrams"] == (1, 2)
    assert Analyzer(language="en").config["char_ngrams"] is None


def test_tokenize_batch_equals_single_and_threads():
    a = Analyzer()
    texts = [t * (i % 3 + 1) for i, t in enumerate(TRICKY * 20)]
    want = [a.tokenize(t) for t in texts]
    assert a.tokenize_batch(texts) == want
    out = {}

    def work(n):
        out[n] = a.tokenize_batch(texts)

    ts = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert all(v == want for v in out.values())


def test_tokenize_reads_every_str_form():
    # tokenize reads the str's UTF-8 as CPython caches it: ASCII, Latin-1, UCS-2
    # and UCS-4 strs, the same object twice, a fresh copy, and a text past the
    # 4,096-byte short-text path must all cut as jieba does.
    a = segmenter("default", True)
    texts = [
        "plain ascii text, v1.2",
        "café crème brûlée",
        "我来到北京清华大学，WES-5.4.5型号",
        "𠮷野家的牛丼和䶮字",
        "长文本：" + "南京市长江大桥。" * 700,
    ]
    for t in texts:
        want = jieba_ref(t, "default", True)
        assert a.tokenize(t) == want, t[:40]
        assert a.tokenize(t) == want, t[:40]
        assert a.tokenize(t.encode().decode()) == want, t[:40]
    with pytest.raises(UnicodeEncodeError):
        a.tokenize("lone \ud800 surrogate")
    # The error leaves nothing behind: the next call works.
    assert a.tokenize("我来到北京") == ["我", "来到", "北京"]


def test_keywords_tfidf_equal_jieba():
    import jieba.analyse

    a = Analyzer(language="zh")
    for text in [
        TRICKY[-1],
        NEWS,
        "此外，公司拟对全资子公司吉林欧亚置业有限公司增资4.3亿元，增资后，吉林欧亚置业注册资本由7000万元增加到5亿元。",
    ]:
        got = a.keywords(text, k=5)
        ref = jieba.analyse.extract_tags(text, topK=5, withWeight=True)
        assert [w for w, _ in got] == [w for w, _ in ref]
        for (_, x), (_, y) in zip(got, ref):
            assert x == pytest.approx(y, rel=1e-9)


def test_keywords_textrank_equal_jieba():
    import jieba.analyse

    a = Analyzer(language="zh")
    # Texts whose words are all in the dictionary: jieba-rs's POS tags equal
    # jieba.posseg's there, so TextRank must agree to the last digit.
    texts = [
        NEWS,
        "此外，公司拟对全资子公司吉林欧亚置业有限公司增资4.3亿元，增资后，"
        "吉林欧亚置业注册资本由7000万元增加到5亿元。",
    ]
    for text in texts:
        got = a.keywords(text, k=10, method="textrank")
        ref = jieba.analyse.textrank(text, topK=10, withWeight=True)
        assert [w for w, _ in got] == [w for w, _ in ref], text
        for (_, x), (_, y) in zip(got, ref):
            assert x == pytest.approx(y, rel=1e-9)
    with pytest.raises(ValueError, match="keyword method"):
        a.keywords(NEWS, method="nope")


def test_keywords_on_stard_equal_jieba(stard_texts):
    import jieba.analyse

    a = Analyzer(language="zh")
    texts = stard_texts
    same_tfidf = sum(
        [w for w, _ in a.keywords(t, k=5)] == jieba.analyse.extract_tags(t, topK=5) for t in texts
    )
    same_textrank = sum(
        [w for w, _ in a.keywords(t, k=5, method="textrank")] == jieba.analyse.textrank(t, topK=5)
        for t in texts
    )
    assert same_tfidf == len(texts)
    # TextRank differs only where jieba.posseg's own HMM tags words outside the
    # dictionary differently from jieba-rs (README, "Known limits"): 91.8% equal.
    assert same_textrank >= 0.9 * len(texts), same_textrank / len(texts)


def test_user_dict_and_add_word(tmp_path):
    text = "韩玉赏鉴的是石墨烯材料"
    base = segmenter("default", True)
    assert "韩玉赏鉴" not in base.tokenize(text)
    d = tmp_path / "user.txt"
    d.write_text("韩玉赏鉴 3 nr\n石墨烯\n", encoding="utf-8")
    a = Analyzer(language="zh", stopwords=None, lowercase=False, keep_punctuation=True, user_dict=d)
    jieba.load_userdict(str(d))
    try:
        assert a.tokenize(text) == jieba_ref(text, "default", True)
        assert "韩玉赏鉴" in a.tokenize(text)
        assert a.add_word("是石", 100000) == 100000
        jieba.add_word("是石", 100000)
        assert a.tokenize(text) == jieba_ref(text, "default", True)
    finally:
        jieba.del_word("是石")
        jieba.del_word("韩玉赏鉴")
        jieba.del_word("石墨烯")


# jieba 0.42.1's own parse of a user-dictionary line (jieba/__init__.py, re_userdict).
JIEBA_USERDICT = re.compile("^(.+?)( [0-9]+)?( [a-z]+)?$", re.U)

# Lines both accept (single spaces, as jieba's regex needs): (line, word, freq, tag).
ACCEPTED_LINES = [
    ("韩玉赏鉴", "韩玉赏鉴", None, None),
    ("石墨烯 3", "石墨烯", "3", None),
    ("是石 200000 n", "是石", "200000", "n"),
    ("京华大 nz", "京华大", None, "nz"),
    ("\ufeff大酒 0", "大酒", "0", None),
]


def test_user_dict_accepts_what_jieba_reads_alike(tmp_path):
    text = "韩玉赏鉴的是石墨烯材料，京华大酒店"
    d = tmp_path / "user.txt"
    d.write_text("\n".join(line for line, *_ in ACCEPTED_LINES) + "\n\n", encoding="utf-8")
    for line, *want in ACCEPTED_LINES:
        got = [g.strip() if g else g for g in JIEBA_USERDICT.match(line.lstrip("\ufeff")).groups()]
        assert got == want, line
    a = Analyzer(language="zh", stopwords=None, lowercase=False, keep_punctuation=True, user_dict=d)
    jieba.load_userdict(str(d))
    try:
        assert a.tokenize(text) == jieba_ref(text, "default", True)
        assert "韩玉赏鉴" in a.tokenize(text)
    finally:
        for _, word, *_ in ACCEPTED_LINES:
            jieba.del_word(word)


@pytest.mark.parametrize(
    "line,message",
    [
        ("词 5x", "neither a frequency"),
        ("词 -5", "neither a frequency"),
        ("词 N", "neither a frequency"),
        ("词 x n", "frequency"),
        ("词 5 NR", "tag"),
        ("词 5 n extra", "4 fields"),
        ("New York City", "3 fields|frequency"),
        ("词 99999999999999999999999", "too large"),
    ],
)
def test_user_dict_malformed_line_names_file_and_line(tmp_path, line, message):
    d = tmp_path / "user.txt"
    d.write_text("好词 3\n\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"user\.txt: line 3: .*({message})"):
        Analyzer(language="zh", user_dict=d)


def test_bad_arguments():
    with pytest.raises(ValueError, match="language"):
        Analyzer(language="fr")
    with pytest.raises(ValueError, match="mode"):
        Analyzer(mode="fast")
    with pytest.raises(ValueError, match="stemmer"):
        Analyzer(stemmer="klingon")
    with pytest.raises(FileNotFoundError):
        Analyzer(language="zh", user_dict="/nonexistent/dict.txt")
    with pytest.raises(TypeError, match="expected str"):
        Analyzer().tokenize_batch(["ok", 3])
    with pytest.raises(TypeError):
        Analyzer().tokenize(None)
    assert isinstance(densparse.Analyzer(), densparse.analysis.Analyzer)
