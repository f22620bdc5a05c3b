"""benchmarks/mentor_attacks.py on a tiny drqv2 pixel run: rows, budgets and the report page."""

from __future__ import annotations

import pytest
import yaml

from benchmarks import mentor_attacks

ATTACKS = {
    "attack": {
        "units": "pixels",
        "eps": ["8/255"],
        "episodes": 1,
        "stealth": False,
        "attacks": [
            {"name": "random", "settings": {"seed": 0}},
            {"name": "pgd", "settings": {"iterations": 3, "step_size": 2 / 255, "decay_every": 0}},
        ],
    }
}


def test_pixel_attack_rows_hold_the_budget_and_the_page_has_the_frames(
    tmp_path, pixel_run, monkeypatch
):
    pixel_run(tmp_path)
    attacks = tmp_path / "attacks.yaml"
    attacks.write_text(yaml.safe_dump(ATTACKS))
    monkeypatch.setattr(mentor_attacks, "ATTACKS", str(attacks))
    page = tmp_path / "page"
    (page / "stale.txt").parent.mkdir()
    (page / "stale.txt").write_text("from an earlier run")

    figures = mentor_attacks.attack_rows(tmp_path / "run", None, page)

    assert figures["model"] == "final" and figures["episodes"] == 1
    assert set(figures["attacks"]) == {"random@8/255", "pgd@8/255"}
    clean = figures["clean"]["return"]
    for row in figures["attacks"].values():
        assert 0 < row["linf_max"] <= 8 + 1e-6  # pixel levels, on the integer grid
        assert row["eps_raw"] == pytest.approx(8.0)
        assert row["regret_return"] == pytest.approx(row["return"] - clean)  # negative: damage
    assert (page / "frames_pgd.png").stat().st_size > 1000
    assert (page / "report.md").read_text().count("pgd") >= 1
    assert not (page / "stale.txt").exists()  # the page is replaced, not merged


def test_each_attacked_run_keeps_its_own_entry_and_page(tmp_path, monkeypatch):
    from benchmarks import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(mentor_attacks, "RESULTS", tmp_path)
    pages = []

    def rows(run, episodes, page):  # type: ignore[no-untyped-def]
        pages.append(page)
        return {"model": "final", "clean": {"return": len(run.name)}, "attacks": {}}

    monkeypatch.setattr(mentor_attacks, "attack_rows", rows)
    monkeypatch.chdir(tmp_path)
    for name in ("first_s0", "second_s0", "first_s0"):
        mentor_attacks.main([name, "--episodes", "2"])
    figures = common.read_figures("mentor_attacks")
    assert set(figures) == {"first_s0", "second_s0"}
    assert figures["second_s0"]["clean"]["return"] == len("second_s0")
    assert [p.relative_to(tmp_path).as_posix() for p in pages[:2]] == [
        "mentor_attacks/first_s0",
        "mentor_attacks/second_s0",
    ]
