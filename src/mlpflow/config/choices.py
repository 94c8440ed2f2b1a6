"""Config choices that the code below the config also reads, kept free of imports: the network
(and so the served model, which installs neither omegaconf nor Hydra) takes them from here, and
`config/schema.py` validates against them."""

# model.activation -> the torch.nn module class (`model/mlp.py` builds it by this name).
ACTIVATIONS = {
    "relu": "ReLU",
    "tanh": "Tanh",
    "sigmoid": "Sigmoid",
    "gelu": "GELU",
    "leaky_relu": "LeakyReLU",
    "selu": "SELU",
}

# model.numeric_embedding.kind -> the options it takes besides `kind` (`model/embeddings.py`
# builds it; n_bins is what train fits the piecewise-linear bins with).
NUMERIC_EMBEDDINGS = {
    "none": (),
    "periodic": ("d_embedding", "n_frequencies", "frequency_scale"),
    "piecewise_linear": ("d_embedding", "n_bins", "activation"),
}
