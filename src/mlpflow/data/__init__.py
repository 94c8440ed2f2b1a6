"""Data: raw sources (built-in sets, synthetic, CSV/Parquet) and the prepare stage's splits."""
