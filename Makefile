# make serve — set up (venv, locked install, build) and start the service on the shipped model
# make serve-proxy — the same behind the nginx front on 127.0.0.1:8080 (needs Debian's nginx)
# make test  — same set-up, then the whole test suite (and the benchmarks once, quickly)
# make bench — the benchmark suite, single-threaded, pinned to one core where taskset exists
# make lock  — re-resolve requirements/*.txt (bump LOCK_DATE to take newer releases)
# make lock-check — re-resolve into a temporary folder and compare (asks the live index)
# make gazetteers — rebuild fastner/gazetteers/*.txt from their source packages
# make wheel — dist/: an sdist, and a portable wheel built from it in isolation (pinned build tools)
# make mutate — mutation testing (mutmut) of the modules that hold the promises; MODULES=... for some
# make mutate-kernels — fixed mutations of the Cython kernels, each rebuilt and tested
# make model-fast, make model-accurate — retrain the shipped models from CoNLL-2003 (DATA=...)
# make wheel-accurate — dist/: the accurate model's package as a wheel

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

.PHONY: serve serve-proxy test test-portable lint bench build install lock lock-check gazetteers \
        wheel clean mutate mutate-kernels model-fast model-accurate accurate-member install-accurate wheel-accurate

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

test: build lint
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider
	$(MAKE) --no-print-directory test-portable

# The kernels as a wheel builds them (no -march: the x86-64 baseline) in a tree of their
# own, every other file a link to the checkout's, so the kernel tests run on the code a
# pip user installs and tests/test_portable_build.py compares its tags with the native
# build's. Run from inside the tree, whose fastner/ comes first on sys.path.
PORTABLE := build/portable
PORTABLE_TESTS := test_kernels.py test_kernel_registry.py test_model.py test_features.py \
                  test_bench_report.py test_portable_build.py
$(PORTABLE)/.built-stamp: $(STAMP) $(KERNEL_SOURCES) setup.py
	rm -rf $(PORTABLE)
	FASTNER_MARCH= $(BIN)/python setup.py -q build_ext --force --build-lib $(PORTABLE)/lib \
	    --build-temp $(PORTABLE)/temp
	$(BIN)/python -c "import glob, os; tree = '$(PORTABLE)/tree/fastner'; os.makedirs(tree); \
	    [os.symlink(os.path.abspath(p), os.path.join(tree, os.path.basename(p))) \
	     for p in glob.glob('fastner/*') if not p.endswith(('.so', '__pycache__'))]; \
	    [os.replace(p, os.path.join(tree, os.path.basename(p))) \
	     for p in glob.glob('$(PORTABLE)/lib/fastner/*.so')]"
	touch $@

test-portable: build $(PORTABLE)/.built-stamp
	cd $(PORTABLE)/tree && FASTNER_PORTABLE_TREE=$(CURDIR)/$(PORTABLE)/tree \
	    $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider \
	    $(addprefix $(CURDIR)/tests/,$(PORTABLE_TESTS))

# ruff (pyflakes, import order, pyupgrade) over the code, mypy over the public API;
# their settings are in pyproject.toml, their versions in the dev lock.
lint: $(STAMP)
	$(BIN)/ruff check fastner service benchmarks tests models setup.py
	$(BIN)/mypy

# PyTorch is optional: its benchmarks are skipped, with the reason shown, when it is absent.
bench: build
	$(BIN)/pip install -q "torch==2.13.0" || \
	    echo "PyTorch not installed: its comparison rows will be skipped"
	benchmarks/run.sh

# Not part of make test (it takes tens of minutes): tests/mutation/ and docs/testing.md.
mutate: build
	$(BIN)/python tests/mutation/mutate.py $(MODULES)

mutate-kernels: build
	$(BIN)/python tests/mutation/kernel_mutants.py

lock: $(STAMP)
	LOCK_DATE=$(LOCK_DATE) requirements/lock.sh $(BIN)/uv

# Not part of make test: it asks the live index, whose answer for a past date can change.
lock-check: $(STAMP)
	LOCK_DATE=$(LOCK_DATE) requirements/lock-check.sh $(BIN)/uv

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

# The two shipped models, rebuilt from CoNLL-2003 (docs/models.md says how each was
# chosen on valid). Both are final fits on train + valid for the epoch count chosen on
# valid (--patience 0: no early stopping on data they trained on); test is scored once,
# for the card. The accurate model is a second stage over the fast one (docvote), so
# model-accurate follows model-fast; it goes into the package fastner-accurate, which is
# installed into the venv by make install-accurate (`fastner.load("accurate")`).
DATA ?= ../shared/data/conll2003
FAST_EPOCHS ?= 18
ACCURATE_EPOCHS ?= 14
FAST_MODEL ?= models/fastner-conll03.npz
ACCURATE_MODEL ?= packages/fastner-accurate/fastner_accurate/fastner-accurate.npz
FIRST_STAGE ?= fast
SEED ?= 0
model-fast: build
	OPENBLAS_NUM_THREADS=1 $(BIN)/fastner train --train $(DATA)/train.txt $(DATA)/valid.txt \
	    --dev $(DATA)/valid.txt --test $(DATA)/test.txt --patience 0 --epochs $(FAST_EPOCHS) \
	    --seed $(SEED) --quiet --out $(FAST_MODEL)

# one member of the accurate ensemble (MEMBER=path, SEED=...)
accurate-member: build
	OPENBLAS_NUM_THREADS=1 $(BIN)/fastner train --train $(DATA)/train.txt $(DATA)/valid.txt \
	    --dev $(DATA)/valid.txt --test $(DATA)/test.txt --patience 0 \
	    --epochs $(ACCURATE_EPOCHS) --features caps:5,docvote:5 --first-stage $(FIRST_STAGE) \
	    --seed $(SEED) --quiet --out $(MEMBER)

# two members (seeds 0 and 1), averaged into one model (fastner ensemble): a third
# member gains 0.13 on valid but takes raw text below the accurate model's speed floor
MEMBERS_DIR ?= build/accurate
model-accurate: build
	for seed in 0 1; do \
	    $(MAKE) --no-print-directory accurate-member SEED=$$seed \
	        MEMBER=$(MEMBERS_DIR)/member.s$$seed.npz || exit 1; \
	done
	$(BIN)/fastner ensemble $(MEMBERS_DIR)/member.s0.npz $(MEMBERS_DIR)/member.s1.npz \
	    --test $(DATA)/test.txt --out $(ACCURATE_MODEL)

install-accurate: $(STAMP)
	$(BIN)/pip install -q --no-deps --no-build-isolation ./packages/fastner-accurate

wheel-accurate: $(STAMP)
	$(BIN)/uv build --no-cache --out-dir $(DIST) packages/fastner-accurate

clean:
	rm -rf build dist $(VENV) fastner/_kernels.c fastner/*.so *.egg-info
