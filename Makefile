# The two commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

# --no-compile: skipping the .pyc pass over torch saves minutes; Python compiles what it imports.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --no-compile -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) recipes/demo.py --out runs/demo

bench: $(STAMP)
	$(PY) benchmarks/sampler_overhead.py --json runs/bench/sampler_overhead.json
	$(PY) benchmarks/trainer_overhead.py --json runs/bench/trainer_overhead.json
	$(PY) -c "import diffusers" 2>/dev/null || $(PY) -m pip install -q -e ".[bench]" || echo "diffusers not installed: parity skips its pairs"
	$(PY) -c "import importlib.util as u, sys; sys.exit(u.find_spec('k_diffusion') is None)" || $(PY) -m pip install -q --no-deps k-diffusion || echo "k-diffusion not installed: parity skips its pairs"
	$(PY) benchmarks/parity.py --json runs/bench/parity.json
	$(PY) benchmarks/quality_vs_nfe.py --json runs/bench/quality_vs_nfe.json --png runs/bench/quality_vs_nfe.png
	$(PY) benchmarks/training_throughput.py --json runs/bench/training_throughput.json
	$(PY) benchmarks/vocoder_speed.py --json runs/bench/vocoder_speed.json

clean:
	rm -rf runs .pytest_cache
