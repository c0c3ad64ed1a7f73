#!/usr/bin/env bash
# Train on a SLURM cluster (srun, one task per GPU):
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#     tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]
# GPUS > GPUS_PER_NODE spans GPUS / GPUS_PER_NODE nodes. GPUS_PER_NODE=0 runs GPUS
# tasks on CPUs (gloo). Running the same command again (or a requeued sbatch job)
# resumes from WORK_DIR's last checkpoint; AUTO_RESUME=0 starts afresh.
# Preemption and requeue: docs/distributed.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/dist_common.sh"
[[ $# -ge 4 ]] ||
  die "usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args]"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
shift 4
mapfile -t RESUME < <(resume_args "$WORK_DIR" "$@")
run_srun "$PARTITION" "$JOB_NAME" tools/train.py "$CONFIG" --work-dir="$WORK_DIR" \
  "${RESUME[@]}" "$@"
