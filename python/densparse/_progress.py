"""Progress bars for long work: tqdm when wanted, nothing otherwise."""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

#: Work smaller than this shows no bar unless asked for explicitly.
AUTO_THRESHOLD = 20_000


def wants_progress(show_progress: Optional[bool], total: int) -> bool:
    """Resolve ``show_progress=None``: on for large jobs on a terminal, unless
    the environment variable ``DENSPARSE_PROGRESS=0`` turns bars off."""
    if show_progress is not None:
        return bool(show_progress)
    if os.environ.get("DENSPARSE_PROGRESS", "1") == "0":
        return False
    return total >= AUTO_THRESHOLD and sys.stderr.isatty()


class Progress:
    """A context manager giving a callback ``tick(n)`` that advances a bar."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self._bar = None

    def __enter__(self) -> Optional[Callable[[int], None]]:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, desc=self.desc, unit="doc", dynamic_ncols=True)
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
