"""Test-time evaluation: torchmetrics collections, DVC plot data (JSON) and PNG figures."""
