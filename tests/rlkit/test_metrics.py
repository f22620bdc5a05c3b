"""Metric sinks: the append-only CSV, callbacks, and the fan-out log."""

from __future__ import annotations

import numpy as np

from rlkit import metrics
from rlkit.metrics import CallbackSink, CSVSink, MetricsLog


def test_csv_grows_columns_truncates_and_reloads(tmp_path):
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path)
    log.log(10, {"a": 1})
    log.log(20, {"b": np.float32(2.5)})
    log.log(30, {"a": 3, "c": 4, "skipped": "text"})
    log.close()
    assert path.read_text() == "step,a,b,c\n10,1.0,,\n20,,2.5,\n30,3.0,,4.0\n"
    reloaded = MetricsLog(path)
    reloaded.truncate(20)
    reloaded.log(25, {"d": 5})
    reloaded.close()
    assert path.read_text() == "step,a,b,c,d\n10,1.0,,,\n20,,2.5,,\n25,,,,5.0\n"


def test_csv_appends_without_rewriting(tmp_path, monkeypatch):
    """Rows with known columns are appended: the file is rewritten only when a column is added."""
    rewrites: list[str] = []
    real = metrics.atomic_write_text
    monkeypatch.setattr(metrics, "atomic_write_text", lambda p, t: (rewrites.append(t), real(p, t)))
    sink = CSVSink(tmp_path / "m.csv")
    for step in range(1, 501):
        sink.write(step, {"loss": step / 2})
    sink.write(501, {"loss": 1.0, "q": 2.0})
    for step in range(502, 601):
        sink.write(step, {"loss": 0.5, "q": 1.0})
    sink.close()
    assert len(rewrites) == 2  # the first row (header) and the new column 'q'
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "step,loss,q" and len(lines) == 601
    assert lines[500] == "500,250.0," and lines[-1] == "600,0.5,1.0"


def test_truncate_without_dropped_rows_does_not_rewrite(tmp_path, monkeypatch):
    sink = CSVSink(tmp_path / "m.csv")
    sink.write(1, {"a": 1.0})
    sink.close()
    calls: list[int] = []
    monkeypatch.setattr(metrics, "atomic_write_text", lambda p, t: calls.append(1))
    CSVSink(tmp_path / "m.csv").truncate(5)
    assert calls == []


def test_callback_sink_receives_every_record(tmp_path):
    seen: list[tuple[int, dict[str, float]]] = []
    log = MetricsLog(
        tmp_path / "m.csv", sinks=[CallbackSink(lambda step, m: seen.append((step, m)))]
    )
    log.log(5, {"eval/return_mean": -3.5, "note": "x"})
    log.log(6, {})
    log.close()
    assert seen == [(5, {"eval/return_mean": -3.5})]
