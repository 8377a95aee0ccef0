"""Progress bars for long work: tqdm when wanted, nothing otherwise."""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional

#: Work smaller than this shows no bar unless asked for explicitly.
AUTO_THRESHOLD = 20_000


def on_terminal() -> bool:
    """Whether automatic progress bars may be drawn: stderr is a terminal and the
    environment variable ``DENSPARSE_PROGRESS=0`` does not turn bars off."""
    return os.environ.get("DENSPARSE_PROGRESS", "1") != "0" and sys.stderr.isatty()


def wants_progress(
    show_progress: Optional[bool], total: int, threshold: int = AUTO_THRESHOLD
) -> bool:
    """Resolve ``show_progress=None``: on for jobs of ``threshold`` items or more when
    :func:`on_terminal`; ``True`` / ``False`` are taken as given."""
    if show_progress is not None:
        return bool(show_progress)
    return total >= threshold and on_terminal()


class Progress:
    """A context manager giving a callback ``tick(n)`` that advances a bar counting
    ``unit`` items (``doc``, ``query``, ``text``...)."""

    def __init__(self, total: int, desc: str, enabled: bool, unit: str = "doc") -> None:
        self.total, self.desc, self.enabled, self.unit = total, desc, enabled, unit
        self._bar = None

    def __enter__(self) -> Optional[Callable[[int], None]]:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total, desc=self.desc, unit=self.unit, dynamic_ncols=True)
        return self._bar.update

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
