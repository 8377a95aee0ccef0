"""Helpers shared by the benchmark scripts: timing, tables, machine facts, RESULTS.md."""

from __future__ import annotations

import datetime as dt
import gc
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

#: The repository root. The benchmarks measure the installed densparse, or the in-tree build
#: (python/densparse/_core.abi3.so) when none is installed; scripts import it from here.
REPO = Path(__file__).resolve().parent.parent
try:
    import densparse
except ImportError:
    sys.path.insert(0, str(REPO / "python"))
    import densparse

_T0 = time.perf_counter()
_NAME = ["bench"]


def set_log_name(name: str) -> None:
    _NAME[0] = name


def log(msg: str) -> None:
    print(f"[{_NAME[0]} {time.perf_counter() - _T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def timed_runs(fn: Callable[[], Any], reps: int, budget_s: float) -> list[float]:
    """Time ``fn`` up to ``reps`` times; stop early once the runs so far took ``budget_s``."""
    times: list[float] = []
    for i in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if i + 1 < reps and sum(times) > budget_s:
            log(f"  budget of {budget_s:.0f}s reached after {len(times)} run(s)")
            break
    return times


def med(times: list[float]) -> float:
    return statistics.median(times)


def fmt_num(x: Optional[float], digits: int = 3) -> str:
    """Human number: 3 significant digits, thousands separators for big ones."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if x == 0:
        return "0"
    return f"{x:.{max(digits - 1 - math.floor(math.log10(abs(x))), 0)}f}"


def fmt_ratio(x: Optional[float]) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if 0 < x < 0.1:  # two significant digits, not "0.00x"
        return f"{x:.2g}x"
    return f"{x:.2f}x" if x < 10 else f"{x:.1f}x"


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] * len(headers)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def rss_mb(kb: Optional[float]) -> str:
    return "n/a" if kb is None else f"{kb / 1024:,.0f}"


class Row:
    """One timed implementation: throughput = units / median seconds."""

    def __init__(self, name: str, threads: str, units: float, times: list[float], **extra: Any):
        self.name, self.threads, self.units, self.times = name, threads, units, times
        self.extra = extra

    @property
    def median(self) -> float:
        return med(self.times)

    @property
    def rate(self) -> float:
        return self.units / self.median if self.median > 0 else float("nan")


def rate_table(rows: list[Row], unit_label: str, rate_label: str) -> str:
    body = [
        [
            r.name,
            r.threads,
            f"{r.units:,}" if isinstance(r.units, int) else fmt_num(r.units),
            str(len(r.times)),
            fmt_num(r.median),
            fmt_num(r.rate),
        ]
        for r in rows
    ]
    headers = ["Implementation", "threads", unit_label, "runs", "median (s)", rate_label]
    return md_table(headers, body)


def ratio_table(ours: list[Row], peers: list[Row]) -> str:
    """densparse rows x peer columns: throughput ratio densparse / peer (higher = better)."""
    headers = ["densparse / peer"] + [f"vs {p.name} ({p.threads})" for p in peers]
    body = [
        [o.name + f" ({o.threads})"] + [fmt_ratio(o.rate / p.rate) for p in peers] for o in ours
    ]
    return md_table(headers, body)


def package_versions(packages, missing: Optional[str] = None) -> dict:
    """``{"densparse": version, package: version}`` for the results header; a package that is
    not installed is shown as ``missing``, or left out when ``missing`` is None."""
    import importlib.metadata

    out = {"densparse": getattr(densparse, "__version__", "dev")}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            if missing is not None:
                out[pkg] = missing
    return out


def unit_rows(rng, n: int, dim: int = 384):
    """``n`` random unit vectors of ``dim`` float32s (a Gaussian direction: what random
    embeddings cost a dense index, with no structure to exploit)."""
    import numpy as np

    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def time_each(
    fn: Callable[[Any], Any], queries: list, warmup: int = 20, budget_s: Optional[float] = None
) -> list[float]:
    """Seconds of ``fn(q)`` for each query, after ``warmup`` untimed calls; stops early once
    the timed calls took ``budget_s`` (slow peers at large sizes)."""
    for q in queries[:warmup]:
        fn(q)
    out: list[float] = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t0)
        if budget_s is not None and sum(out) > budget_s:
            break
    return out


def latency_row(name: str, times: list[float]) -> list[str]:
    """``[name, queries, p50 ms, p99 ms, mean ms, queries/s]`` for a latency table."""
    import numpy as np

    ms = np.asarray(times) * 1000
    return [
        name,
        f"{len(ms):,}",
        fmt_num(float(np.percentile(ms, 50))),
        fmt_num(float(np.percentile(ms, 99))),
        fmt_num(float(ms.mean())),
        fmt_num(1000 / float(ms.mean())),
    ]


def git_commit() -> str:
    """The commit measured: short hash, ``+dirty`` when the library's sources (python/,
    rust/) differ from it; ``unknown`` outside a git checkout."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "python", "rust"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def met_mark(ok: bool) -> str:
    """How a goal line says whether the goal was reached."""
    return "**met**" if ok else "**NOT met**"


def goal_line(text: str, value: Optional[float], target: float) -> str:
    if value is None or math.isnan(value):
        return f"- Goal: {text} >= {target:g}x: **not measured**"
    met = met_mark(value >= target)
    return f"- Goal: {text} >= {target:g}x: measured {fmt_ratio(value)} — {met}"


# --------------------------------------------------------------------------- machine
def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "mem_gib": None if mem_kb is None else mem_kb / 1024**2,
        "os": platform.platform(),
        "python": platform.python_version(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def peak_rss_kb() -> int:
    """This process's peak RSS in KiB: VmHWM from /proc (Linux). Not ru_maxrss: Linux carries
    the parent's RSS at fork/exec time into a child's ru_maxrss, which would hide a small
    child under a big parent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_header(info: dict, command_note: str = "") -> list[str]:
    """The lines every results section starts with: date, machine, load, command."""
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    mem = f"{info['mem_gib']:.1f} GiB" if info["mem_gib"] else "unknown"
    return [
        f"- Date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}" + command_note,
        f"- Machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable), "
        f"{mem} RAM; {info['os']}",
        f"- Load average at start / end: "
        f"{', '.join(f'{x:.2f}' for x in info['loadavg'] or [])} / "
        f"{', '.join(f'{x:.2f}' for x in load_end or [])}",
        f"- Command: `{shlex.join(['python3', *map(portable, sys.argv)])}` "
        "(from the repository root)",
    ]


def portable(arg: str) -> str:
    """A command-line argument as it can be written down: paths inside the repository (or the
    shared folder beside it) relative to the repository root, other absolute paths reduced to
    ``<dir>/`` + their name, so results name no path of the machine they ran on."""
    p = Path(arg)
    if not p.is_absolute():
        return arg
    for base, prefix in ((REPO, ""), (REPO.parent, "../")):
        try:
            return prefix + str(p.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return f"<dir>/{p.name}"


def write_results(out: Path, section: str, mark_start: str, mark_end: str) -> None:
    """Put ``section`` between the markers in ``out``, keeping the rest of the file."""
    if out.exists():
        text = out.read_text(encoding="utf-8")
        a, b = text.find(mark_start), text.find(mark_end)
        if a != -1 and b > a:
            text = text[:a] + section + text[b + len(mark_end) :]
        else:
            text = text.rstrip("\n") + "\n\n" + section + "\n"
    else:
        text = "# densparse benchmarks\n\n" + section + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
