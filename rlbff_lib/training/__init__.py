"""Training runs: one config -> TRL mapping (with a pass-through of any TRL field), accelerate launches,
checkpoints and resume, keyed run folders and publishing, model cards, the SLURM launcher.
"""
