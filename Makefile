# The two commands:  make demo   make test
# Both set up what they need (tools/install.sh: .venv, torch, mmcv built with ops,
# mmdet, deform_ext). PYTHON=/path/to/python uses that interpreter instead of .venv.
ifdef PYTHON
export PYTHON
PY := $(PYTHON)
else
PY := $(CURDIR)/.venv/bin/python
endif

DATA_DIR ?= data/synthetic_coco
DEMO_CONFIG ?= configs/demo/deformable-detr-refine-twostage-copypaste-dn30-qfl-ms-bf16-nodrop_r18-tiny_1xb4-26e_synthetic.py
DEMO_WORK_DIR ?= work_dirs/demo
PYTEST_ARGS ?=

.PHONY: install data demo test benchmark

install:
	@tools/install.sh

data: install
	@$(PY) tools/data/generate_synthetic_coco.py --out-dir $(DATA_DIR)

demo: data
	@echo "[demo] training $(DEMO_CONFIG) on CPU (about 10 min on 2 cores), then COCO evaluation"
	@$(PY) tools/train.py $(DEMO_CONFIG) --work-dir $(DEMO_WORK_DIR)
	@$(PY) tools/analysis/demo_summary.py $(DEMO_WORK_DIR) --config $(DEMO_CONFIG) \
		--images $(DATA_DIR)/val/000001.png $(DATA_DIR)/val/000002.png

test: install
	@tools/install_slurm.sh
	@$(PY) -m pytest tests $(PYTEST_ARGS)

benchmark: install
	@$(PY) benchmarks/ms_deform_attn.py
