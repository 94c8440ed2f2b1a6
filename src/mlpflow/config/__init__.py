"""The config: composed from conf/ (or read from params.yaml) and validated once."""
