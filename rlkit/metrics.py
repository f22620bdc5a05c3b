"""Training metrics through a list of sinks: ``metrics.csv``, TensorBoard, and hooks.

A sink is anything with ``write(step, metrics)`` and ``close()``. The CSV sink appends one row
per call (the file is rewritten only when a new metric adds a column, or when a resumed run
drops rows logged after its checkpoint), so logging costs O(1) per call, not O(run length).
:class:`CallbackSink` hands every record to a function: a sweep runner uses it to report
intermediate results.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from rlkit.io import atomic_write_text


class MetricSink(Protocol):
    """Where metric records go."""

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` at env step ``step``.

        :param step: env steps so far.
        :param metrics: name -> value.
        """
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


class CSVSink:
    """A wide CSV (one column per metric) appended to in place.

    :param path: the CSV file (read back when it exists: columns and rows are kept).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] = ["step"]
        self.rows: list[dict[str, str]] = []
        if self.path.is_file():
            with self.path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = list(reader.fieldnames or ["step"])
                self.rows = [dict(r) for r in reader]
        self._handle: io.TextIOWrapper | None = None

    def truncate(self, step: int) -> None:
        """Drop rows logged after ``step`` (a run resumed from an older checkpoint).

        :param step: the checkpoint's step.
        """
        kept = [r for r in self.rows if _step_of(r) <= step]
        if len(kept) != len(self.rows) or not self.path.is_file():
            self.rows = kept
            self._rewrite()

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Append a row (rewrite the file once when a new column appears).

        :param step: env steps so far.
        :param metrics: name -> value.
        """
        row = {"step": str(step), **{k: repr(float(v)) for k, v in metrics.items()}}
        self.rows.append(row)
        new = [k for k in metrics if k not in self.columns]
        if new:
            self.columns.extend(new)
            self._rewrite()
            return
        handle = self._open()
        csv.DictWriter(handle, fieldnames=self.columns, restval="", lineterminator="\n").writerow(
            row
        )
        handle.flush()

    def _open(self) -> io.TextIOWrapper:
        if self._handle is None:
            if not self.path.is_file():
                self._rewrite()
            self._handle = self.path.open("a", newline="")
        return self._handle

    def _rewrite(self) -> None:
        self.close()
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.path, buffer.getvalue())

    def close(self) -> None:
        """Close the file handle."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def _step_of(row: dict[str, str]) -> float:
    try:
        return float(row["step"])
    except (KeyError, ValueError):
        return math.inf


class TensorBoardSink:
    """TensorBoard scalars.

    :param folder: the events folder.
    """

    def __init__(self, folder: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(folder))

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Add each metric as a scalar at ``step``.

        :param step: env steps so far.
        :param metrics: name -> value.
        """
        for key, value in metrics.items():
            self._writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        """Flush the events file."""
        self._writer.close()


class CallbackSink:
    """Calls ``callback(step, metrics)`` for every record (e.g. reports to a sweep scheduler).

    :param callback: the function.
    """

    def __init__(self, callback: Callable[[int, dict[str, float]], None]) -> None:
        self.callback = callback

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """Forward the record.

        :param step: env steps so far.
        :param metrics: name -> value.
        """
        self.callback(step, dict(metrics))

    def close(self) -> None:
        """Nothing to release."""


class MetricsLog:
    """Fans records out to sinks; the first is the run's CSV.

    :param csv_path: the run's ``metrics.csv``.
    :param tensorboard: events folder, or None for no TensorBoard.
    :param sinks: further sinks (hooks).
    """

    def __init__(
        self, csv_path: Path, tensorboard: Path | None = None, sinks: Iterable[MetricSink] = ()
    ) -> None:
        self.csv = CSVSink(csv_path)
        self.sinks: list[MetricSink] = [self.csv]
        if tensorboard is not None:
            self.sinks.append(TensorBoardSink(tensorboard))
        self.sinks.extend(sinks)

    def truncate(self, step: int) -> None:
        """Drop CSV rows after ``step`` (resuming from an older checkpoint).

        :param step: the checkpoint's step.
        """
        self.csv.truncate(step)

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        """Record ``metrics`` at ``step`` in every sink (non-numeric values are skipped).

        :param step: env steps so far.
        :param metrics: name -> value.
        """
        numeric = {k: float(v) for k, v in metrics.items() if _is_number(v)}
        if numeric:
            for sink in self.sinks:
                sink.write(step, numeric)

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
