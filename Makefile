# Two commands for a fresh Debian machine: `make demo` and `make test`.
# Each creates or updates the local venv by itself (idempotent, pinned versions).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements-dev.txt
	# exococotools 1.0.0 (the authors' Ex-OKS reference, test-only) needs numpy+cython at build time.
	$(PY) -c "import exococotools" 2>/dev/null || $(PIP) install --no-build-isolation exococotools==1.0.0
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $@

test: venv
	$(PY) -m pytest -q test

demo: venv
	$(VENV)/bin/probpose demo --out $(OUT)/demo

bench: venv
	$(VENV)/bin/probpose bench

clean:
	rm -rf $(VENV) $(OUT) *.egg-info
