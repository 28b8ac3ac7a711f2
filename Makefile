# make serve — set up (venv, install, build) and start the service on the shipped model
# make test  — same set-up, then the whole test suite (and the benchmarks once, quickly)
# make bench — the benchmark suite, single-threaded, pinned to one core where taskset exists

PYTHON ?= python3
# make builds the kernels for the machine it runs on (see setup.py); FASTNER_MARCH= for portable code
export FASTNER_MARCH ?= native
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXT    := $(VENV)/.built-stamp

.PHONY: serve test bench build install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Build requirements first, so the editable install can skip build isolation.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q "Cython>=3.0" "numpy>=1.26" "scipy>=1.11"
	$(BIN)/pip install -q --no-build-isolation -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Rebuild the extension whenever a kernel source changes. Built aside and renamed into
# place: overwriting the .so in place would corrupt it under a running server or trainer.
$(EXT): $(STAMP) fastner/_kernels.pyx fastner/_blas.pxd setup.py
	$(BIN)/python setup.py -q build_ext --force --build-lib build/ext
	$(BIN)/python -c "import glob, os, shutil; \
	    src = glob.glob('build/ext/fastner/_kernels*.so')[0]; \
	    dst = os.path.join('fastner', os.path.basename(src)); \
	    shutil.copy2(src, dst + '.tmp'); os.replace(dst + '.tmp', dst)"
	touch $(EXT)

build: $(EXT)

serve: build
	FASTNER_WORKERS=$${FASTNER_WORKERS:-2} $(BIN)/gunicorn -c service/gunicorn.conf.py "service.app:create_app()"

test: build
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q benchmarks --benchmark-disable -p no:cacheprovider

# PyTorch is optional: its benchmarks are skipped, with the reason shown, when it is absent.
bench: build
	$(BIN)/pip install -q "torch==2.13.0" || \
	    echo "PyTorch not installed: its comparison rows will be skipped"
	benchmarks/run.sh

clean:
	rm -rf build $(VENV) fastner/_kernels.c fastner/*.so *.egg-info
