"""MLflow: the store, run identity and lineage, the training logger, sweeps and pruning."""
