"""The exported directory's non-graph files, and the atomic replace of the output directory."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from densparse.export.kinds import st_modules

log = logging.getLogger("densparse.export")

#: Tokenizer / config files copied from the transformer's folder when present.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "sentencepiece.bpe.model",
    "spiece.model",
    "config.json",
)
#: sentence-transformers files copied from the top of the directory.
ST_FILES = (
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
)


def copy_support_files(model_dir: Path, tdir: Path, out: Path, kind: str) -> list[str]:
    """Copy tokenizer, config and sentence-transformers files; returns what was copied.
    A missing tokenizer.json is generated from the other tokenizer files by transformers'
    fast tokenizer (the Encoder reads only tokenizer.json)."""
    copied = []
    # tokenizer files: the tokenizer's own directory wins; ST files: the model directory wins
    for names, dirs in ((TOKENIZER_FILES, (tdir, model_dir)), (ST_FILES, (model_dir, tdir))):
        for name in names:
            src = next((d / name for d in dirs if (d / name).is_file()), None)
            if src is not None:
                shutil.copyfile(src, out / name)
                copied.append(name)
    for m in st_modules(model_dir) or []:
        sub = str(m.get("path", "")) if isinstance(m, dict) else ""
        t = str(m.get("type", "")) if isinstance(m, dict) else ""
        if sub and not t.endswith(".Transformer") and (model_dir / sub).is_dir():
            # copyfile: no permission bits (read-only sources would give read-only copies)
            shutil.copytree(model_dir / sub, out / sub, copy_function=shutil.copyfile)
            for d in [out / sub, *(p for p in (out / sub).rglob("*") if p.is_dir())]:
                d.chmod(0o755)
            copied.append(sub + "/")
    if not (out / "tokenizer.json").is_file():
        from densparse.export._deps import require

        transformers = require("transformers")
        try:
            tok = transformers.AutoTokenizer.from_pretrained(str(tdir), use_fast=True)
            tok.backend_tokenizer.save(str(out / "tokenizer.json"))
        except Exception as e:
            raise ValueError(
                f"{model_dir} has no tokenizer.json and transformers could not build a fast "
                f"tokenizer from its files: {e}"
            ) from e
        copied.append("tokenizer.json (generated)")
    return copied


def write_meta(out: Path, meta: dict[str, Any]) -> None:
    """densparse.json: read by densparse.models.families.detect_family."""
    with open(out / "densparse.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=2)
        f.write("\n")


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} exists and is not a directory")


@contextlib.contextmanager
def staging_dir(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """A temporary directory next to ``out_dir``; on success it replaces ``out_dir`` by
    rename (the old one is removed only after the new one is in place); on failure it is
    deleted and ``out_dir`` is left untouched."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.export-", dir=out_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old: Optional[Path] = None
    try:
        if out_dir.exists():
            check_out_dir(out_dir, overwrite)  # it may have appeared meanwhile
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.rmdir(old)
            os.rename(out_dir, old)
        os.rename(tmp, out_dir)
    except BaseException:
        if old is not None and not out_dir.exists():
            os.rename(old, out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
