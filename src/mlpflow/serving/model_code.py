"""The file MLflow runs to build the logged model ("models from code": nothing is unpickled)."""

from mlflow.models import set_model

from mlpflow.serving.pyfunc import MLPModel

set_model(MLPModel())
