#!/bin/bash
# round.launcher.command inside a SLURM allocation: `accelerate launch` once per node.
#
# The round calls it as `srun-accelerate.sh [--config_file F] ARGS -m rlhf.stage NAME ...`;
# this adds what differs per node and per allocation (machine rank, head node, process
# count) in front, so leave round.launcher.num_processes null here.
set -euo pipefail
: "${SLURM_JOB_NODELIST:?run inside a SLURM allocation (sbatch or salloc)}"
nodes=${SLURM_JOB_NUM_NODES:-1}
gpus=${GPUS_PER_NODE:-8}
head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
port=${MAIN_PROCESS_PORT:-29500}
accelerate=$(command -v accelerate)

# SLURM_NODEID is only known inside each task: expand it there (single quotes).
exec srun --nodes="$nodes" --ntasks-per-node=1 --kill-on-bad-exit=1 bash -c '
    exec "$0" launch --num_machines "$1" --num_processes "$2" --main_process_ip "$3" \
        --main_process_port "$4" --machine_rank "$SLURM_NODEID" "${@:5}"' \
    "$accelerate" "$nodes" "$((nodes * gpus))" "$head" "$port" "$@"
