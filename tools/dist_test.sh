#!/usr/bin/env bash
# Evaluate with NPROC processes on this machine (torchrun):
#   tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for torchrun.
# Without GPUs the processes run on the CPU over gloo. See docs/distributed.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/dist_common.sh"
[[ $# -ge 3 ]] || die "usage: tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py args]"
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
run_torchrun "$NPROC" tools/test.py "$CONFIG" "$CHECKPOINT" "$@"
