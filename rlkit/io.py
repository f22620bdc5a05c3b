"""Atomic file writes and safe loading (no pickle: torch weights-only, numpy without objects)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written).

    :param path: destination file.
    :param data: the bytes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Atomically write UTF-8 text to ``path``."""
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (numpy scalars and arrays converted)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=to_jsonable) + "\n")


def to_jsonable(obj: Any) -> Any:
    """``json.dumps`` fallback for numpy and torch values."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_torch(path: str | Path, obj: Any) -> None:
    """Atomically ``torch.save`` tensors / state dicts / plain containers (loadable
    weights-only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_torch(path: str | Path) -> Any:
    """Load a torch file with ``weights_only=True``: untrusted files cannot run code."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def save_arrays(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically save numeric arrays to an ``.npz`` (loaded without pickle)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load an ``.npz`` written by :func:`save_arrays`, refusing pickled objects."""
    with np.load(Path(path), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
