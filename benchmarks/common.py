"""Shared helpers of the benchmarks: machine facts, git commit, result files."""

from __future__ import annotations

import fcntl
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlkit.io import atomic_write_json

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Facts about this machine for result files."""
    import torch

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def commit() -> str | None:
    """The current git commit (None outside a repository or before the first commit)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=RESULTS.parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def read_figures(name: str) -> dict[str, Any]:
    """The figures of ``benchmarks/results/NAME.json`` ({} before its first run)."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text())["figures"] if path.is_file() else {}


def take_lock(lock: Path) -> bool:
    """Create ``lock`` with this process's id; False when a live process already holds it
    (a lock left by a dead process is taken over).

    :param lock: the lock file.
    """
    for _ in range(2):
        try:
            with lock.open("x") as handle:
                handle.write(str(os.getpid()))
            return True
        except FileExistsError:
            try:
                holder = int(lock.read_text() or "0")
                os.kill(holder, 0)
                return False
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
            except PermissionError:
                return False
    return False


@contextmanager
def results_lock() -> Iterator[None]:
    """Hold an exclusive lock on benchmarks/results/ (several benchmark processes adding to the
    same result file read, merge and write it one at a time)."""
    handle = os.open(RESULTS, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def write_result(name: str, figures: dict[str, Any], config: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/NAME.json`` with figures, config, commit, machine and date."""
    path = RESULTS / f"{name}.json"
    payload = {
        "name": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": commit(),
        "machine": machine(),
        "config": config,
        "figures": figures,
    }
    atomic_write_json(path, payload)
    return path
