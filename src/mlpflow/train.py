"""`python -m mlpflow.train [overrides]`: the Hydra pipeline (see `mlpflow.stages.pipeline`)."""

from mlpflow.stages.pipeline import main

if __name__ == "__main__":
    main()
