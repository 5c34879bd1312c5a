# The two commands a new user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/data
DEMO_OUT := examples/out

.PHONY: install demo test lint bench clean

install: $(STAMP)

# constraints.txt is the one place pinning torch==2.14.1 + torchvision==0.29.2 (see its header).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -c "import torch, torchvision, av, h5py; print('installed torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

demo: install
	$(PY) examples/make_example.py $(EXAMPLE)
	$(VENV)/bin/lfbtool extract --config examples/demo.toml --overwrite
	$(VENV)/bin/lfbtool inspect $(DEMO_OUT)/lfb_train.h5
	$(VENV)/bin/lfbtool extract --config examples/own_videos.toml --overwrite
	$(VENV)/bin/lfbtool verify examples/out-own-videos/lfb_train.h5

# Most tests wait on lfbtool processes (one thread each): two workers keep both cores of a small machine busy.
# worksteal: a worker that runs dry takes tests from the other's queue (module fixtures stay mostly on one worker).
TEST_WORKERS ?= 2

test: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal

lint: install
	$(VENV)/bin/ruff check lfbtool tests benchmarks examples

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(EXAMPLE) $(DEMO_OUT) examples/out-own-videos bench-out
