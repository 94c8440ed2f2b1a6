"""The trained model outside training: the pyfunc model, its export, the registry, predict."""
