"""Small file helpers shared by the BEIR and TREC readers (internal)."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Union

PathLike = Union[str, "os.PathLike[str]"]


def open_text(path: PathLike, mode: str = "r") -> IO[str]:
    """Open a UTF-8 text file, transparently gunzipping ``*.gz`` files.

    Raises a ``FileNotFoundError`` naming the file when it does not exist for reading.
    """
    p = Path(path)
    if "r" in mode and not p.is_file():
        # A plain open() error names the path too, but saying what was expected helps more.
        kind = "directory, not a file" if p.is_dir() else "no such file"
        raise FileNotFoundError(f"{p}: {kind}")
    if p.suffix == ".gz":
        return gzip.open(p, mode + "t", encoding="utf-8", newline="\n")  # type: ignore[return-value]
    # newline="\n": split lines on "\n" only, so a stray "\r" inside a field cannot cut a
    # record in two; a "\r\n" terminator is stripped by the readers.
    return open(p, mode, encoding="utf-8", newline="\n")


def numbered_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a text file.

    Line numbers start at 1; the line terminator (``\\n`` or ``\\r\\n``) is removed.
    """
    with open_text(path) as f:
        try:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
        except UnicodeDecodeError as e:  # (text is decoded in blocks: no line number)
            raise ValueError(f"{path}: not UTF-8 text ({e.reason}); a binary file?") from None
        except (gzip.BadGzipFile, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from None


def malformed(path: PathLike, lineno: int, message: str) -> ValueError:
    """The error for a bad line: a ``ValueError`` saying ``file:line: message``.

    Bad file content is always a ``ValueError``, even when the problem is a JSON value of
    the wrong type, so that callers catch one exception type for a malformed file.
    """
    return ValueError(f"{path}:{lineno}: {message}")


def add_judgment(
    qrels: dict[str, dict[str, int]], qid: str, doc_id: str, rel: int, path: PathLike, lineno: int
) -> None:
    """Record one relevance judgment; the same pair judged twice differently is an error."""
    judged = qrels.setdefault(qid, {})
    old = judged.get(doc_id)
    if old is not None and old != rel:
        raise malformed(
            path, lineno, f"pair ({qid!r}, {doc_id!r}) judged {old} earlier and {rel} here"
        )
    judged[doc_id] = rel


def json_objects(path: PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file; a line that
    is not valid JSON or not a JSON object is a :func:`malformed` error."""
    for lineno, line in numbered_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise malformed(path, lineno, f"invalid JSON ({e.msg})") from None
        if not isinstance(obj, dict):
            raise malformed(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj
