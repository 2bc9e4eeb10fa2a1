#!/usr/bin/env bash
# The GPU figures in one command (under 5 minutes on a current GPU): the trainer, the model families and a sweep on CUDA,
# each beside the notebook loop timed in the same sitting, then the CUDA tests (pytest -m cuda). On a machine
# without CUDA it prints this CPU's families table (a short one), says so, and exits 0.
#   bash bench/device.sh            (uses .venv/bin/python if present; PY=... to choose another)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  echo "## The trainer (the seed's MLP, 10 epochs)"
  "$PY" bench/trainer.py --device cuda --epochs 10 --sizes 144 1024 --repeats 1
  echo; echo "## Model families: one by one vs one population (2 epochs), the CNN with and without augmentation"
  "$PY" bench/families.py --device cuda --epochs 2 --sizes 32 144 --singles 4 --augment
  echo; echo "## What the probes and precise BN statistics cost (the MLP, K=144)"
  "$PY" bench/probes.py --device cuda --k 144 --repeats 1
  echo; echo "## A 144-variant sweep through MLflow, 3 populations of 48, written behind training or in turn"
  "$PY" bench/sweep.py --device cuda --epochs 3 --launchers population --max-size 48 --write-behind on off
  echo; echo "## The CUDA tests (a member = its single run, with probes and augmentation too; the generic path = the MLP's)"
  "$PY" -m pytest -q -m cuda -p no:cacheprovider
else
  "$PY" bench/families.py --device cpu --epochs 1 --sizes 8 --singles 2
  echo
  echo "no CUDA device is present: the table above is this CPU's. Run bash bench/device.sh on a machine with a GPU for the GPU figures."
fi
