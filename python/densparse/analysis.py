"""The Analyzer: text -> tokens (implemented in Rust, configured here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Optional, Union

from densparse import _core
from densparse._checks import check_k, check_path

#: Largest word frequency (jieba's totals are sums of them).
MAX_FREQ = 2**40

StopwordsArg = Union[str, Sequence[str], None]


class Analyzer(_core.Analyzer):
    """Text analysis for retrieval, in Rust.

    Args:
        language: ``"auto"`` (Han runs to jieba, the rest to the English
            pipeline), ``"zh"`` (all text through jieba) or ``"en"``.
        mode: jieba mode: ``"default"`` (precise), ``"search"`` (cut_for_search)
            or ``"all"`` (full mode).
        hmm: jieba's HMM for unknown words (precise and search modes).
        stopwords: ``"auto"`` (English for en, Chinese for zh, both for auto),
            ``"en"``, ``"zh"``, ``None`` or a list of words.
        stemmer: ``"auto"`` (Snowball English except for zh), ``None`` or a
            Snowball language name (``"english"``, ``"french"``, ...).
        lowercase: lowercase tokens.
        keep_punctuation: keep punctuation tokens (and one-letter Latin words).
        user_dict: a jieba user dictionary file (``word [freq] [tag]`` lines).
        char_ngrams: ``"auto"`` adds Han character unigrams and bigrams for
            zh/auto retrieval analyzers (not with ``keep_punctuation=True``),
            ``None`` or a ``(min, max)`` length range.
        tokenizer: how Latin-script text is cut into words.
            ``"default"``: bm25s's splitting (runs of letters, digits and
            ``_``; words of one character dropped) with dotted acronyms and
            decimals joined (``U.S.`` -> ``us``, ``i.e.`` -> ``ie``, ``2.5``);
            apostrophes split, so ``It's`` loses the stopword ``it``. ``"bm25s"``: exactly
            bm25s's ``r"(?u)\\b\\w\\w+\\b"``. ``"uax29"``: Unicode words, which keep
            ``don't``, ``2.5`` and ``1,000`` whole (densparse before the
            current default; indexes saved without a tokenizer setting load
            with it). With ``keep_punctuation=True`` words are always UAX #29's.
            See docs/concepts/analysis.md for the reasoning and measurements.

    ``Analyzer(language="zh", mode=M, hmm=H, stopwords=None, lowercase=False,
    keep_punctuation=True)`` returns exactly Python jieba 0.42.1's segmentation
    in mode M, whitespace-only tokens left out.
    """

    def __new__(
        cls,
        language: str = "auto",
        mode: str = "default",
        hmm: bool = True,
        stopwords: StopwordsArg = "auto",
        stemmer: Optional[str] = "auto",
        lowercase: bool = True,
        keep_punctuation: bool = False,
        user_dict: Union[str, os.PathLike, None] = None,
        char_ngrams: Union[str, tuple[int, int], None] = "auto",
        tokenizer: str = "default",
    ) -> Analyzer:
        return super().__new__(
            cls,
            language,
            mode,
            hmm,
            stopwords,
            stemmer,
            lowercase,
            keep_punctuation,
            None if user_dict is None else check_path(user_dict, "user_dict"),
            char_ngrams,
            tokenizer,
        )

    def keywords(self, text: str, k: int = 10, method: str = "tfidf") -> list[tuple[str, float]]:
        """Top-k keywords with weights, as ``jieba.analyse`` (``"tfidf"``: extract_tags;
        ``"textrank"``). ``k >= 1``; a larger k than there are words gives them all."""
        return super().keywords(text, check_k(k), method)

    def add_word(self, word: str, freq: Optional[int] = None, tag: Optional[str] = None) -> int:
        """Add a word to the segmentation dictionary (``jieba.add_word``); ``freq=None``
        uses :meth:`suggest_freq`. Returns the frequency used."""
        if freq is not None:
            if isinstance(freq, bool) or not isinstance(freq, int):
                raise TypeError(f"freq must be an int or None, not {type(freq).__name__}")
            if not 0 <= freq <= MAX_FREQ:
                raise ValueError(f"freq must be between 0 and {MAX_FREQ}, got {freq}")
        return super().add_word(word, freq, tag)
