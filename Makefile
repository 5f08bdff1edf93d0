# Every target that runs code installs the virtual environment first (idempotent).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install compare test bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job: both methods, per iteration, on the built-in pairs (short run).
compare: install
	$(PY) -m experiments compare --max-size 200 --checkpoint data/dpm_learned.pt --out reports/latest

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks.classic
	$(PY) -m benchmarks.diff

clean:
	rm -rf $(VENV) reports/latest .pytest_cache
