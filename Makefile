# make serve — set up (venv, locked install, build) and start the service on the shipped model
# make serve-proxy — the same behind the nginx front on 127.0.0.1:8080 (needs Debian's nginx)
# make test  — same set-up, then the whole test suite (and the benchmarks once, quickly)
# make bench — the benchmark suite, single-threaded, pinned to one core where taskset exists
# make lock  — re-resolve requirements/*.txt (bump LOCK_DATE to take newer releases)
# make gazetteers — rebuild fastner/gazetteers/*.txt from their source packages
# make wheel — dist/: an sdist, and a portable wheel built from it in isolation (pinned build tools)

PYTHON ?= python3
# make builds the kernels for the machine it runs on (see setup.py); FASTNER_MARCH= for portable code
export FASTNER_MARCH ?= native
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXT    := $(VENV)/.built-stamp
PIP_VERSION := 26.3
# Releases after this instant are invisible to `make lock`, so the lock is reproducible.
LOCK_DATE   := 2026-11-28T00:00:00Z
KERNEL_SOURCES := $(wildcard fastner/*.pyx fastner/*.pxd fastner/*.h)

.PHONY: serve serve-proxy test bench build install lock gazetteers wheel clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Every dependency, build tools included, at the exact version in the lock, installed
# with pip's normal build isolation. Only fastner itself is then built without
# isolation, against the locked Cython/numpy/scipy just installed.
$(STAMP): $(BIN)/python requirements/dev.txt pyproject.toml setup.py
	$(BIN)/pip install -q "pip==$(PIP_VERSION)"
	$(BIN)/pip install -q -r requirements/dev.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# Rebuild the extension whenever a kernel source changes. Built aside and renamed into
# place: overwriting the .so in place would corrupt it under a running server or trainer.
$(EXT): $(STAMP) $(KERNEL_SOURCES) setup.py
	$(BIN)/python setup.py -q build_ext --force --build-lib build/ext
	$(BIN)/python -c "import glob, os, shutil; \
	    [(shutil.copy2(src, dst + '.tmp'), os.replace(dst + '.tmp', dst)) \
	     for src in glob.glob('build/ext/fastner/*.so') \
	     for dst in [os.path.join('fastner', os.path.basename(src))]]"
	touch $(EXT)

build: $(EXT)

serve: build
	$(BIN)/fastner serve

# The supported way to expose fastner to a network: nginx (Debian's package) in front
# of gunicorn, on $FASTNER_PUBLIC_BIND (default 127.0.0.1:8080).
serve-proxy: build
	$(BIN)/fastner serve-proxy

test: build
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider

# PyTorch is optional: its benchmarks are skipped, with the reason shown, when it is absent.
bench: build
	$(BIN)/pip install -q "torch==2.13.0" || \
	    echo "PyTorch not installed: its comparison rows will be skipped"
	benchmarks/run.sh

lock: $(STAMP)
	LOCK_DATE=$(LOCK_DATE) requirements/lock.sh $(BIN)/uv

# The lists come from the locked versions of their packages (fastner[gazetteers]), so
# the same lock gives the same files (tests/test_gazetteers.py rebuilds and compares).
gazetteers: $(STAMP)
	$(BIN)/python -m fastner.gazetteers.build

# From the sdist, so the wheel holds only what a release would: no stray build/ objects.
# FASTNER_MARCH is emptied: a wheel must run on any x86-64 machine.
DIST ?= dist
# The sdist step writes fastner.egg-info into the tree; left there it would shadow the
# installed metadata (entry points) for anything run from the checkout.
wheel: $(STAMP)
	FASTNER_MARCH= $(BIN)/uv build --no-cache --out-dir $(DIST) .
	rm -rf fastner.egg-info

clean:
	rm -rf build dist $(VENV) fastner/_kernels.c fastner/*.so *.egg-info
