# Source me: points SLURM clients (sinfo, sbatch, submitit) at the project's single-node cluster.
#   source scripts/slurm/env.sh
# The cluster lives under one folder, $CROWNQ_SLURM_DIR (default /tmp/crownq-slurm); start it with
# scripts/slurm/start.sh. Without SLURM_CONF, clients look in /etc/slurm and retry for 60 s.
export CROWNQ_SLURM_DIR="${CROWNQ_SLURM_DIR:-/tmp/crownq-slurm}"
export SLURM_CONF="$CROWNQ_SLURM_DIR/etc/slurm.conf"
