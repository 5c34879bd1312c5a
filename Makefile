# The two commands a new user needs: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXAMPLE := examples/data
DEMO_OUT := examples/out
OWN_OUT := examples/out-own-videos

.PHONY: install demo doc-images test lint bench clean

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
	$(VENV)/bin/lfbtool show $(DEMO_OUT)/lfb_train.h5 --frames-root $(EXAMPLE)/frames --video vid_a --tiles 4 \
		-o $(DEMO_OUT)/lfb_train.png
	$(VENV)/bin/lfbtool extract --config examples/own_videos.toml --overwrite
	$(VENV)/bin/lfbtool verify $(OWN_OUT)/lfb_train.h5
	@# Previews of the persons that extract detected: detect with its settings finds that run complete
	@# (--resume) and only draws $(OWN_OUT)/preview/<video>.png from $(OWN_OUT)/persons_train.pkl.
	$(VENV)/bin/lfbtool detect --videos-root $(EXAMPLE)/videos --out $(OWN_OUT)/persons_train.pkl --resume \
		--detector fasterrcnn_mobilenet_v3_large_320_fpn --detector-checkpoint $(EXAMPLE)/person_detector_random.pth \
		--detector-min-size 96 --detector-max-size 160 --max-per-frame 3 --clip-len 4 --frame-interval 2 \
		--preview $(OWN_OUT)/preview --preview-frames 6
	@echo ""
	@echo "Done. The banks (random weights: the numbers mean nothing, the plumbing is real):"
	@echo "  $(DEMO_OUT)/lfb_train.h5              AVA-style inputs (annotations, proposals, frames)"
	@echo "  $(OWN_OUT)/lfb_train.h5   bare videos (persons detected every second)"
	@echo "Pictures: $(DEMO_OUT)/lfb_train.png (lfbtool show), $(OWN_OUT)/preview/*.png (detect --preview)"
	@echo "Next:"
	@echo "  $(VENV)/bin/lfbtool inspect $(OWN_OUT)/lfb_train.h5 --video vid_a   # its keyframes and boxes"
	@echo "  $(PY) -c \"from lfbtool import FeatureBank; print(FeatureBank('$(DEMO_OUT)/lfb_train.h5')['vid_a', 902].shape)\""
	@echo "  your own data: README.md (Extract a bank), docs/own-videos.md (a folder of videos)"

# The two pictures in docs/ (docs/images/), made by the demo.
doc-images: demo
	cp $(DEMO_OUT)/lfb_train.png docs/images/show_lfb_train.png
	cp $(OWN_OUT)/preview/vid_a.png docs/images/detect_preview_vid_a.png

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
	rm -rf $(EXAMPLE) $(DEMO_OUT) $(OWN_OUT) bench-out
