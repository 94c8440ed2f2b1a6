"""`python -m mlpflow.train [overrides]`: the Hydra pipeline (see `mlpflow.stages.pipeline`)."""

if __name__ == "__main__":
    from mlpflow.collector import collect_less_often

    collect_less_often()  # before the pipeline's imports: they build most of the heap
    from mlpflow.stages.pipeline import main

    main()
