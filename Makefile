VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The simulator core compiled with mypyc (disco/native.py): 2-3 x faster, the same metrics.
# `make test NATIVE=0` (any target) skips it, e.g. with no C compiler: the Python sources run.
NATIVE ?= 1
NATIVE_BUILD := disco/_native/manifest.json
CORE := $(wildcard disco/engine/*.py disco/hardware/*.py disco/vmm/*.py)
BUILD_NATIVE := DISCO_PURE=1 $(PY) -m disco.native_build

.PHONY: setup native test run lint bench clean

ifeq ($(NATIVE),1)
setup: $(STAMP) $(NATIVE_BUILD)
else
setup: $(STAMP)
endif

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,native]'
	touch $(STAMP)

# Rebuilt when a core source changes; `import disco` also checks the sources' hashes and runs
# them instead of a stale build.
$(NATIVE_BUILD): $(STAMP) $(CORE)
	$(BUILD_NATIVE)

native: $(STAMP)
	$(BUILD_NATIVE)

test: setup
	DISCO_EXPECT_NATIVE=$(NATIVE) $(PY) -m pytest

run: setup
	$(PY) experiments/reproduce.py --size small

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) *.egg-info disco/_native
