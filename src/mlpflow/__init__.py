"""mlpflow: an experiment pipeline for neural networks on tabular data."""

__version__ = "0.1.0"
