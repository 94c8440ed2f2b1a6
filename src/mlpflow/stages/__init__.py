"""The three DVC stages (`run(cfg)` each) and the Hydra pipeline that chains them."""
