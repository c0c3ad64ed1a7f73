#!/usr/bin/env bash
# Train with NPROC processes on this machine (torchrun):
#   tools/dist_train.sh CONFIG NPROC [train.py args]
# One process per GPU; without GPUs the processes train on the CPU over gloo.
# Multi-node: run it on every node with NNODES, NODE_RANK, MASTER_ADDR and PORT set.
# Running the same command again resumes from the work dir's last checkpoint
# (AUTO_RESUME=0 starts afresh). See docs/distributed.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/dist_common.sh"
[[ $# -ge 2 ]] || die "usage: tools/dist_train.sh CONFIG NPROC [train.py args]"
CONFIG=$1
NPROC=$2
shift 2
mapfile -t RESUME < <(resume_args "$(work_dir_of "$CONFIG" "$@")" "$@")
run_torchrun "$NPROC" tools/train.py "$CONFIG" "${RESUME[@]}" "$@"
