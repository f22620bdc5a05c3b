# rlkit: `make demo` (set up + the main job) and `make test` (set up + the test suite).
# Both create .venv from scratch when it is missing and reuse it afterwards.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rlkit-installed
# The known-good CPU stack (see ../shared/design.md): pinned here, loose in pyproject.toml.
PINS   := "pandapower==3.5.*" "scipy<1.17" "simbench==1.6.*" "stable-baselines3==2.9.*" \
          "gymnasium>=1.0,<2" "numba>=0.58" \
          "mujoco==3.3.0" "dm_control==1.0.28" "metaworld==3.1.1" \
          "gymnasium-robotics==1.4.2" "imageio>=2.30"

.PHONY: setup demo test test-fast lint bench clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,fast,citylearn,art,offline,ray]" $(PINS) "gym==0.25.2"
	$(BIN)/pip install -q --no-deps CityLearn==2.0.0
	command -v chromium >/dev/null 2>&1 || (apt-get install -y -qq chromium >/dev/null 2>&1 \
	  || (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1) \
	  || echo "chromium could not be installed: the browser tests of the reports will be skipped"
	touch $(STAMP)

setup: $(STAMP)

# The main job: train a battery controller on the smart grid, attack it, write the report.
demo: setup
	$(BIN)/rlkit train configs/grid/demo.yaml
	$(BIN)/rlkit evaluate runs/demo --attack configs/attacks/demo.yaml
	@echo "open runs/demo/attacks/demo/report.html in a browser (README: what the demo shows)"

test: setup
	MUJOCO_GL=egl $(BIN)/python -m pytest

# The fast tier: everything not marked slow.
test-fast: setup
	MUJOCO_GL=egl $(BIN)/python -m pytest -m "not slow"

# Style and types: ruff (lint + format check, 100 columns) and mypy on the core and the agents.
lint: setup
	$(BIN)/ruff check rlkit envs agents attacks tests benchmarks
	$(BIN)/ruff format --check rlkit envs agents attacks tests benchmarks
	$(BIN)/mypy rlkit agents

clean-venv:
	rm -rf $(VENV)
