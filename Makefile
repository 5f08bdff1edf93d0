# Every target that runs code installs the virtual environment first (idempotent).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install compare test bench gpu-check clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job: both methods, per iteration, on the built-in pairs (short run).
compare: install
	$(PY) -m experiments compare --max-size 200 --dpm-reference --checkpoint data/dpm_learned.pt --out reports/latest

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) -m benchmarks.classic
	$(PY) -m benchmarks.diff
	$(PY) -m benchmarks.dpm_quality
	$(PY) -m benchmarks.sweep

# CUDA checks: the gpu-marked tests, then the CUDA benchmark of DPM (prints its figures).
# Without CUDA it says so in one line and succeeds.
gpu-check: install
	@if $(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		$(PY) -m pytest -q -m gpu && \
		$(PY) -m benchmarks.diff --device cuda --output reports/bench_diff_cuda.json; \
	else \
		echo "gpu-check: torch sees no CUDA device here; nothing to check (run it on a machine with a GPU)"; \
	fi

clean:
	rm -rf $(VENV) reports/latest .pytest_cache
