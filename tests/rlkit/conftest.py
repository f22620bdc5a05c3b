"""Shared fixtures of the rlkit foundation tests: config files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml


def minimal_config(run_dir: Path, **sections: Any) -> dict[str, Any]:
    """A valid SAC/Pendulum config whose run directory is ``run_dir``; ``sections`` replace keys."""
    data: dict[str, Any] = {
        "env": {"id": "Pendulum-v1"},
        "agent": {"name": "sac"},
        "train": {"total_steps": 100, "progress": False},
        "run": {"dir": str(run_dir), "tensorboard": False},
    }
    data.update(sections)
    return data


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """``write_config(data_or_text, name="exp.yaml")`` writes a YAML file into tmp_path."""

    def write(content: dict[str, Any] | str, name: str = "exp.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        )
        return path

    return write


@pytest.fixture
def base_config(tmp_path: Path) -> dict[str, Any]:
    """A valid config (as a mapping) whose run directory is tmp_path/run (never created by
    errors)."""
    return minimal_config(tmp_path / "run")
