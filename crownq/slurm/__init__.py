"""Running crownq on SLURM: Hydra launchers (code snapshot, hard-failure handling, preemption/requeue).

Select with `hydra/launcher=slurm` (generic), `slurm_8xh100` (one 8-GPU node per seed) or
`submitit_local`; see docs/slurm.md. The launcher classes live in `crownq.slurm.launcher` and are only
imported by Hydra when one of those options is picked.
"""
