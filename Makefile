# ablate: `make run` and `make test` are all a newcomer needs; each creates .venv on first use.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The setup's torch: a current release. Without an NVIDIA GPU, PyTorch's CPU build (a few hundred MB, not GBs).
TORCH ?= torch==2.13.0
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
JOBS ?= 1
WORKERS ?= 1
ARGS ?=
STORAGE ?=
DASHBOARD_PORT ?=

.DEFAULT_GOAL := help
.PHONY: help setup run test sweep search dashboard claims report ui server clean docs

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1; then \
	  $(PY) -m pip install -q "$(TORCH)"; \
	else \
	  echo "No NVIDIA GPU found: installing PyTorch's CPU build."; \
	  $(PY) -m pip install -q --retries 1 --timeout 20 "$(TORCH)" --extra-index-url $(TORCH_CPU_INDEX); \
	fi
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

setup: $(VENV)/.ready  ## create .venv with ablate and its dependencies

run: $(VENV)/.ready  ## train the seed notebook's model on the shipped data, recorded in MLflow (ARGS=overrides)
	$(PY) -m ablate $(ARGS)

test: $(VENV)/.ready  ## run the test suite
	$(PY) -m pytest -q -n auto --durations=15 $(ARGS)

# Populations in this process by default; LAUNCHER=population_ray|population_slurm|ray|submitit_slurm|... sends
# the work elsewhere (conf/hydra/launcher/); JOBS=N runs N variants side by side in processes (hydra-joblib-launcher).
LAUNCHER ?= population
LAUNCH = $(if $(filter-out 1,$(JOBS)),hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS),hydra/launcher=$(LAUNCHER))

sweep: $(VENV)/.ready  ## the full ablation grid (360 runs) as populations; EXPERIMENT=bn|dropout|l2|lr; LAUNCHER=population_ray; JOBS=2
	$(PY) -m ablate -m +experiment=$(or $(EXPERIMENT),ablation_grid) $(LAUNCH) $(ARGS)

# WORKERS=N: N search processes, each on its share of the cores (torch would give every one of them all the cores).
SHARE = $(if $(filter-out 1,$(WORKERS)),OMP_NUM_THREADS=$$(( $$(nproc) / $(WORKERS) > 0 ? $$(nproc) / $(WORKERS) : 1 )))

search: $(VENV)/.ready  ## Optuna over the keys of conf/search (p, lambda, lr) (ARGS="search.n_trials=50 model=cnn"); WORKERS=4
	@for i in $$(seq 2 $(WORKERS)); do env $(SHARE) $(PY) -m ablate search search.finalize=false $(ARGS) & done; \
	env $(SHARE) $(PY) -m ablate search $(ARGS); status=$$?; wait; exit $$status

dashboard: $(VENV)/.ready  ## optuna-dashboard on ablate search's studies (STORAGE=postgresql://... for a shared one)
	$(PY) -m ablate dashboard $(if $(DASHBOARD_PORT),--port $(DASHBOARD_PORT)) $(if $(STORAGE),--storage $(STORAGE))

claims: $(VENV)/.ready  ## judge the claims of conf/claims (30 seeds, shipped data and digits): verdict table
	$(PY) -m ablate claims $(ARGS)

report: $(VENV)/.ready  ## markdown + PNG report of the latest sweep (SWEEP=<id> for another)
	$(PY) -m ablate report $(if $(SWEEP),sweep=$(SWEEP))

ui: $(VENV)/.ready  ## open the MLflow UI on ./mlflow.db and print where the runs are
	$(PY) -m ablate ui

server: $(VENV)/.ready  ## shared MLflow tracking server on PostgreSQL (DB=postgresql://..., HOST=127.0.0.1, PORT=5000, AUTH=1)
	$(PY) -m ablate server $(if $(DB),--db $(DB)) --host $(or $(HOST),127.0.0.1) --port $(or $(PORT),5000) $(if $(AUTH),--auth)

clean:  ## remove run outputs (keeps .venv and the MLflow store)
	rm -rf outputs multirun .pytest_cache

docs: $(VENV)/.ready  ## build the documentation site into site/ (mkdocs build --strict)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict
