#!/usr/bin/env bash
# Evaluate on a SLURM cluster (srun, one task per GPU):
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#     tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]
# GPUS_PER_NODE=0 runs GPUS tasks on CPUs (gloo). See docs/distributed.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/dist_common.sh"
[[ $# -ge 4 ]] ||
  die "usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args]"
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
run_srun "$PARTITION" "$JOB_NAME" tools/test.py "$CONFIG" "$CHECKPOINT" "$@"
