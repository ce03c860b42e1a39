# rareid — two commands do all the set-up on a fresh machine:
#   make demo   install, synthesise data, train rareid and a baseline, print them side by side
#   make test   install and run the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The torch/torchvision pair is installed first so pip does not pull a different build;
# override on a GPU machine, e.g. make TORCH_SPEC="torch torchvision" demo
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_RUN ?= runs/demo
PYTEST_ARGS ?=

.PHONY: install demo test test-fast test-e2e lint format bench clean

install: $(STAMP)

# Re-install only when the build input changed (the stamp is older than pyproject.toml).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# The fast recipe: the full method and the IDE + Verif baseline trained 10 epochs from the shipped
# warm start (a backbone trained on HR crops of a separate identity pool), side by side per query
# level (runs/demo/table.md, chart.png, rank_lists.png; the runs in runs/demo/runs);
# re-running resumes or reprints. conf/grids/demo.yaml: from scratch.
demo: $(STAMP)
	$(VENV)/bin/rareid experiment conf/grids/demo_warm.yaml

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not e2e and not faults" $(PYTEST_ARGS)

test-e2e: $(STAMP)
	$(PY) -m pytest -q -m e2e $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check rareid tests benchmarks
	$(PY) -m ruff format --check rareid tests benchmarks
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)
	$(PY) -m ruff check --fix rareid tests benchmarks
	$(PY) -m ruff format rareid tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/model_overhead.py
	$(PY) benchmarks/data_pipeline.py
	$(PY) benchmarks/evaluation.py

clean:
	rm -rf $(DEMO_RUN) .pytest_cache .ruff_cache
