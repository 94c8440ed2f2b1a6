"""Hydra sweeper on Optuna's ask/tell API (hydra-optuna-sweeper 1.3 still pins optuna < 3)."""
