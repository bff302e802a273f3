# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) recipes/demo.py --out runs/demo

bench: $(STAMP)
	$(PY) benchmarks/sampler_overhead.py --json runs/bench/sampler_overhead.json
	$(PY) benchmarks/trainer_overhead.py --json runs/bench/trainer_overhead.json

clean:
	rm -rf runs .pytest_cache
