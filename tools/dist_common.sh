# Shared part of tools/{dist,slurm}_{train,test}.sh; sourced, not run.
#
# Environment (all optional):
#   PYTHON       interpreter for the tools (default: python)
#   AUTO_RESUME  1 (default): a training command whose work dir holds a checkpoint
#                (WORK_DIR/last_checkpoint) resumes from it; 0: start as configured
#   torchrun:    NNODES, NODE_RANK, MASTER_ADDR, PORT (as for torchrun)
#   srun:        GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, MASTER_PORT
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# work_dir_of CONFIG ARGS...: the --work-dir in ARGS, else tools/train.py's default
# ./work_dirs/<config name>.
work_dir_of() {
  local config=$1 previous='' arg
  shift
  for arg in "$@"; do
    case $arg in
      --work-dir=*|--work_dir=*) echo "${arg#*=}"; return ;;
    esac
    if [[ $previous == --work-dir || $previous == --work_dir ]]; then
      echo "$arg"; return
    fi
    previous=$arg
  done
  local name
  name=$(basename "$config")
  echo "work_dirs/${name%.py}"
}

# resume_args WORK_DIR ARGS...: prints --resume when auto-resume applies: AUTO_RESUME
# is not 0, ARGS has no --resume of its own and WORK_DIR/last_checkpoint exists.
# (Fresh starts keep the config's load_from, which --resume would drop.)
resume_args() {
  local work_dir=$1 arg
  shift
  [[ ${AUTO_RESUME:-1} == 0 ]] && return
  for arg in "$@"; do
    [[ $arg == --resume || $arg == --resume=* ]] && return
  done
  if [[ -f $work_dir/last_checkpoint ]]; then
    echo "auto-resume: $work_dir/last_checkpoint -> $(cat "$work_dir/last_checkpoint")" >&2
    echo --resume
  fi
}

# run_torchrun NPROC TOOL ARGS...: NPROC processes on this node with torchrun.
run_torchrun() {
  local nproc=$1 tool=$2
  shift 2
  [[ $nproc =~ ^[1-9][0-9]*$ ]] ||
    die "the number of processes must be a positive integer, got '$nproc'"
  exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$nproc" "$ROOT/$tool" "$@" --launcher pytorch
}

# run_srun PARTITION JOB_NAME TOOL ARGS...: GPUS tasks through srun, one per GPU;
# GPUS_PER_NODE=0 runs GPUS tasks on CPUs (gloo).
run_srun() {
  local partition=$1 job_name=$2 tool=$3
  shift 3
  local gpus=${GPUS:-8} gpus_per_node=${GPUS_PER_NODE:-8}
  [[ $gpus =~ ^[1-9][0-9]*$ ]] || die "GPUS must be a positive integer, got '$gpus'"
  local node_args=()
  if [[ $gpus_per_node -gt 0 ]]; then
    local per_node=$((gpus < gpus_per_node ? gpus : gpus_per_node))  # GPUS=4: one node, 4 GPUs
    node_args=(--gres="gpu:$per_node" --ntasks-per-node="$per_node")
  fi
  # Inside an allocation (sbatch/salloc) each job gets its own rendezvous port, so two
  # jobs sharing a node do not collide; a requeued job keeps its id and its port.
  if [[ -z ${MASTER_PORT:-} && -n ${SLURM_JOB_ID:-} ]]; then
    export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
  fi
  # shellcheck disable=SC2086  # SRUN_ARGS is a list of words
  exec srun -p "$partition" --job-name="$job_name" "${node_args[@]}" \
    --ntasks="$gpus" --cpus-per-task="${CPUS_PER_TASK:-5}" --kill-on-bad-exit=1 \
    ${SRUN_ARGS:-} "$PYTHON" -u "$ROOT/$tool" "$@" --launcher=slurm
}
