# seqflow: `make demo` runs it on a local control plane, `make test` tests it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test unit crds bench tools clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

tools:
	bash hack/system-deps.sh
	bash hack/build-k8s.sh >/dev/null

demo: $(VENV)/.installed tools
	$(PY) hack/demo.py $(DEMO_ARGS)

test: $(VENV)/.installed tools
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

crds: $(VENV)/.installed
	$(PY) -m seqflow crds --output-dir crds
	cp crds/*.yaml charts/seqflow/crds/

bench: $(VENV)/.installed tools
	$(PY) bench/throughput.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
