# seqflow: `make demo` runs it on a local control plane, `make test` tests it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test unit lint crds bench chaos tools lock clean image

# Installs are pinned by constraints.txt (`make lock` writes it anew from a fresh resolve).
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $@

lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -q -e '.[test]'
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^seqflow' > constraints.txt
	rm -rf .lock-venv

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check operator testenv tests bench hack
	$(VENV)/bin/ruff format --check operator testenv tests bench hack
	$(VENV)/bin/mypy

tools:
	bash hack/system-deps.sh
	bash hack/build-k8s.sh >/dev/null

demo: $(VENV)/.installed tools
	$(PY) hack/demo.py $(DEMO_ARGS)

# The real-pod tests (tests/realpods: a real node, the image) run after the rest, in a session of
# their own: one control plane at a time.
test: lint tools
	$(PY) -m pytest --ignore=tests/realpods $(PYTEST_ARGS)
	$(PY) -m pytest tests/realpods $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

# The chart renders its copy in files/crds/ as templates (templates/crds.yaml): `helm upgrade`
# upgrades them.
crds: $(VENV)/.installed
	$(PY) -m seqflow crds --output-dir crds
	cp crds/*.yaml charts/seqflow/files/crds/

bench: $(VENV)/.installed tools
	$(PY) bench/throughput.py $(BENCH_ARGS)

chaos: $(VENV)/.installed tools
	$(PY) bench/chaos.py $(BENCH_ARGS)

# The container image with podman (hack/image.sh says how; IMAGE_ARGS=all adds the test image).
image:
	bash hack/image.sh $(IMAGE_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
