# dfer-pd: `make help` lists the targets.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision resolved together from the registry (see README: Installation).
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
FOLD ?= 1
DFEW_ROOT ?= data/DFEW
COHORT ?= data/cohort/manifest.csv
STAGE1_CKPT ?= runs/dfer_clip/fold$(FOLD)/checkpoints/best.ckpt
SCREENING_MODEL ?= runs/pd_lstm/screening_model
PORT ?= 7860
# One test process per CPU (pytest-xdist); an idle process takes tests from a busy one (worksteal).
PYTEST_ARGS ?= -m "not slow" -n auto --dist worksteal

.DEFAULT_GOAL := help
.PHONY: help venv install demo test test-all test-browser train-dfer train-dfer-folds train-pd ablation extract serve serve-demo bench clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(PY):
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found; set PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install -e ".[dev]"
	touch $@

venv: $(VENV)/.installed ## create the virtual environment and install the project

install: venv ## alias of venv

demo: venv ## whole pipeline on synthetic data with a tiny CLIP (CPU, minutes)
	WANDB_MODE=$${WANDB_MODE:-offline} $(VENV)/bin/dfer-pd demo --out runs/demo

test: venv ## the default test suite (what CI runs)
	WANDB_MODE=disabled $(PY) -m pytest $(PYTEST_ARGS)

test-all: venv ## every test, slow ones included
	WANDB_MODE=disabled $(PY) -m pytest -n auto --dist worksteal

test-browser: venv ## the web page in headless chromium (needs: apt-get install chromium); screenshot in runs/test-artifacts/
	DFER_PD_REQUIRE_BROWSER=1 DFER_PD_TEST_ARTIFACTS=runs/test-artifacts WANDB_MODE=disabled $(PY) -m pytest -m browser -v

train-dfer: venv ## stage 1 on DFEW: DFEW_ROOT=/path/DFEW make train-dfer FOLD=1
	$(VENV)/bin/dfer-pd train-dfer --config experiments/dfer_clip.yaml \
		--data.root $(DFEW_ROOT) --data.fold $(FOLD) --trainer.default_root_dir runs/dfer_clip/fold$(FOLD)

# train-dfer-folds: the paper's 4 classes in runs/dfer_clip (fold k = make train-dfer FOLD=k), 7 in runs/dfer_clip7.
CLASSES ?= 4
FOLDS_DIR ?= runs/dfer_clip$(if $(filter 7,$(CLASSES)),7,)
train-dfer-folds: venv ## stage 1 on DFEW's 5 folds (finished ones skipped) + report: DFEW_ROOT=... make train-dfer-folds [CLASSES=7]
	$(VENV)/bin/dfer-pd train-dfer-folds --config experiments/dfer_clip.yaml \
		--data.root $(DFEW_ROOT) --data.classes $(CLASSES) --runs_dir $(FOLDS_DIR)

extract: venv ## score a cohort with a stage-1 checkpoint into the intensity cache
	$(VENV)/bin/dfer-pd extract --config experiments/pd_lstm.yaml --cohort.manifest $(COHORT) --extraction.checkpoint $(STAGE1_CKPT)

train-pd: venv ## stage 2: extraction through the cache, then 5-fold CV of the residual LSTM
	$(VENV)/bin/dfer-pd train-pd --config experiments/pd_lstm.yaml --cohort.manifest $(COHORT) --extraction.checkpoint $(STAGE1_CKPT)

ablation: venv ## the paper's Table 3 on the cached intensities
	$(VENV)/bin/dfer-pd ablation --config experiments/pd_lstm.yaml --cohort.manifest $(COHORT) --extraction.checkpoint $(STAGE1_CKPT)

serve: venv ## the local screening web page: make serve STAGE1_CKPT=... SCREENING_MODEL=... (http://127.0.0.1:7860)
	$(VENV)/bin/dfer-pd serve --stage1 $(STAGE1_CKPT) --screening_model $(SCREENING_MODEL) --port $(PORT)

serve-demo: venv ## the web page on the models `make demo` trained (runs/demo)
	$(VENV)/bin/dfer-pd serve --stage1 runs/demo/stage1/checkpoints/best.ckpt \
		--screening_model runs/demo/stage2/screening_model --out runs/demo/serve --port $(PORT)

bench: venv ## loader and training-step benchmarks (not part of the tests)
	$(PY) benchmarks/bench_dfer_loader.py

clean: ## remove run outputs (keeps the virtual environment)
	rm -rf runs wandb lightning_logs .pytest_cache
