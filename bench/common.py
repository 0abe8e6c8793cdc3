"""Shared by the benchmark scripts: machine facts, timing statistics and ``bench/results.json``.

Every script prints ratios measured in ONE run and merges them into ``bench/results.json`` under
its own key (an atomic read-modify-write: the file is replaced whole, never half-written).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results.json"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages (runnable processes), to say how busy the machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine(torch_threads: int | None = None) -> dict:
    """CPU model, logical cores, torch threads, GPU, load average, Python/torch versions, date (UTC)."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": load_average(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch_threads if torch_threads is not None else torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                                            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def summary(seconds: list[float]) -> dict:
    """Median, min, max and all repetitions (seconds)."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "runs_s": [round(s, 4) for s in seconds]}


def merge_results(key: str, result: dict, path: Path = RESULTS) -> None:
    """Put ``result`` under ``key`` in ``results.json`` (other keys kept), atomically."""
    from rlbff_lib.core.io import write_json

    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = result
    write_json(path, data)


def show(key: str, ratios: dict, notes: dict | None = None) -> None:
    """Print the headline ratios of one benchmark."""
    print(f"== {key}")
    for name, value in ratios.items():
        print(f"   {key}.{name} = {value:.3f}" if isinstance(value, float) else f"   {key}.{name} = {value}")
    for name, value in (notes or {}).items():
        print(f"   ({name}: {value})")


@contextlib.contextmanager
def work_folder(keep: Path | None, prefix: str, what: str) -> Iterator[Path]:
    """The folder a benchmark builds a tree in (not yet existing): ``keep`` (``--keep DIR``: must be absent or
    empty; kept) or ``rlbff`` in a new temporary folder, removed when the block succeeds. A failure (SystemExit)
    keeps it and names it: ``"... (WHAT kept in DIR)"``."""
    if keep is not None:
        dest = keep.resolve()
        if dest.exists() and any(dest.iterdir()):
            raise SystemExit(f"--keep {dest}: folder exists and is not empty")
        if dest.exists():
            dest.rmdir()
    else:
        dest = Path(tempfile.mkdtemp(prefix=prefix)) / "rlbff"
    try:
        yield dest
    except SystemExit as e:
        raise SystemExit(f"{e} ({what} kept in {dest})") from None
    if keep is None:
        shutil.rmtree(dest.parent, ignore_errors=True)
