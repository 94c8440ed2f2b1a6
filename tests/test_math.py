"""The math of docs/math.md: forward pass, losses, penalties, one GD step per epoch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mlpflow.config.choices import ACTIVATIONS
from mlpflow.model import losses
from mlpflow.model.mlp import MLP
from mlpflow.model.penalties import penalized_parameters, weight_penalty


@pytest.fixture
def tiny_net() -> MLP:
    torch.manual_seed(0)
    net = MLP(n_inputs=3, n_outputs=1, hidden_dims=[2])
    with torch.no_grad():
        net.layers[0].weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [-0.25, 0.0, 1.5]]))
        net.layers[0].bias.copy_(torch.tensor([0.1, -0.2]))
        net.layers[2].weight.copy_(torch.tensor([[3.0, -0.5]]))
        net.layers[2].bias.copy_(torch.tensor([0.7]))
    return net


def test_forward_pass_is_affine_relu_affine(tiny_net: MLP) -> None:
    x = torch.tensor([[1.0, 2.0, 3.0]])
    w1, b1 = tiny_net.layers[0].weight, tiny_net.layers[0].bias
    w2, b2 = tiny_net.layers[2].weight, tiny_net.layers[2].bias
    expected = torch.relu(x @ w1.T + b1) @ w2.T + b2
    assert torch.allclose(tiny_net(x), expected)


@pytest.mark.parametrize("activation", ACTIVATIONS)  # every name the config accepts
def test_activation_and_depth_follow_config(activation: str) -> None:
    net = MLP(5, 4, hidden_dims=[8, 7, 6], activation=activation, dropout=0.1, batch_norm=True)
    linears = [m for m in net.layers if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [8, 7, 6, 4]
    assert (
        sum(
            type(m).__name__.lower().replace("_", "") == activation.replace("_", "")
            for m in net.layers
        )
        == 3
    )
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in net.layers) == 3
    assert net(torch.randn(10, 5)).shape == (10, 4)


@pytest.mark.parametrize(("l1", "l2"), [(0.01, 0.0), (0.0, 0.02), (0.01, 0.02)])
def test_penalty_value_and_gradient_match_formula(tiny_net: MLP, l1: float, l2: float) -> None:
    params = penalized_parameters(tiny_net)
    weights = [tiny_net.layers[0].weight, tiny_net.layers[2].weight]
    assert [p is w for p, w in zip(params, weights, strict=True)] == [True, True]
    penalty = weight_penalty(params, l1, l2)
    expected = sum(l1 * w.abs().sum() + l2 * (w**2).sum() for w in weights)
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-6)
    penalty.backward()
    for w in weights:
        assert torch.allclose(w.grad, l1 * torch.sign(w) + 2 * l2 * w)
    assert tiny_net.layers[0].bias.grad is None  # biases are not penalized


def test_penalty_includes_biases_when_configured(tiny_net: MLP) -> None:
    params = penalized_parameters(tiny_net, include_bias=True)
    expected = sum(p.abs().sum() for p in tiny_net.parameters())
    assert weight_penalty(params, l1=1.0).item() == pytest.approx(expected.item())


def test_zero_strength_penalty_is_exactly_zero(tiny_net: MLP) -> None:
    assert weight_penalty(penalized_parameters(tiny_net)).item() == 0.0


def test_the_periodic_embeddings_frequencies_are_never_penalized() -> None:
    net = MLP(3, 1, [4], numeric_embedding={"kind": "periodic"}, n_continuous=2)
    params = {id(p) for p in penalized_parameters(net, include_bias=True)}
    frequencies = net.numeric_embedding.periodic.weight
    assert id(frequencies) not in params
    assert params == {id(p) for p in net.parameters() if p is not frequencies}


def test_a_network_without_a_numeric_embedding_imports_no_scikit_learn() -> None:
    """rtdl_num_embeddings imports scikit-learn's trees (for its tree-based bins), ~240
    scikit-learn modules that a network without a numeric embedding does not use: the default
    network and its penalty leave both unimported."""
    code = """
import json, sys
from mlpflow.model.mlp import MLP
from mlpflow.model.penalties import penalized_parameters
penalized_parameters(MLP(3, 1, [4]))
print(json.dumps([m for m in ("rtdl_num_embeddings", "sklearn") if m in sys.modules]))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []


LOGITS = torch.tensor([2.0, -1.0, 0.5, -3.0])
LABELS = torch.tensor([1, 0, 0, 1])


def test_bce_equals_formula_and_functional() -> None:
    loss = losses.BinaryCrossEntropy("binary", pos_weight=2.0)(LOGITS, LABELS)
    p, y = torch.sigmoid(LOGITS), LABELS.float()
    formula = -(2.0 * y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    assert loss.item() == pytest.approx(formula.item(), rel=1e-5)
    functional = F.binary_cross_entropy_with_logits(LOGITS, y, pos_weight=torch.tensor(2.0))
    assert loss.item() == pytest.approx(functional.item())


def test_cross_entropy_equals_formula_and_functional() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    target = torch.tensor([0, 1])
    loss = losses.CrossEntropy("multiclass")(logits, target)
    formula = -torch.log_softmax(logits, dim=1)[torch.arange(2), target].mean()
    assert loss.item() == pytest.approx(formula.item(), rel=1e-6)
    smoothed = losses.CrossEntropy("multiclass", label_smoothing=0.1)(logits, target)
    assert smoothed.item() == pytest.approx(
        F.cross_entropy(logits, target, label_smoothing=0.1).item()
    )


def test_class_weights_make_the_loss_a_class_weighted_mean() -> None:
    """c_y-weighted mean of the rows' losses: (Σ c_{y_i} ℓ_i) / Σ c_{y_i}, for both losses."""
    weights = [1.0, 4.0]
    loss = losses.BinaryCrossEntropy("binary", class_weight=weights)(LOGITS, LABELS)
    rows = F.binary_cross_entropy_with_logits(LOGITS, LABELS.float(), reduction="none")
    c = torch.tensor(weights)[LABELS]
    assert loss.item() == pytest.approx(((c * rows).sum() / c.sum()).item(), rel=1e-6)
    assert loss.item() != pytest.approx(rows.mean().item(), rel=1e-3)
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0], [1.0, 1.0, 0.0]])
    target = torch.tensor([0, 1, 1])
    loss = losses.CrossEntropy("multiclass", class_weight=[3.0, 1.0, 2.0])(logits, target)
    rows = -torch.log_softmax(logits, dim=1)[torch.arange(3), target]
    c = torch.tensor([3.0, 1.0, 2.0])[target]
    assert loss.item() == pytest.approx(((c * rows).sum() / c.sum()).item(), rel=1e-6)


def test_balanced_class_weights_are_n_over_k_n_c_and_a_map_names_classes() -> None:
    counts = {"no": 90, "yes": 10}
    balanced = losses.class_weights("balanced", ["no", "yes"], counts)
    assert balanced == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])
    assert losses.class_weights({"yes": 5}, ["no", "yes"], counts) == [1.0, 5.0]
    assert losses.class_weights({1: 2.5}, ["0", "1"], {"0": 3, "1": 4}) == [1.0, 2.5]
    assert losses.class_weights("none", ["no", "yes"], counts) is None


def test_mse_on_probability_for_binary_and_on_values_for_regression() -> None:
    binary = losses.MeanSquaredError("binary")(LOGITS, LABELS)
    assert binary.item() == pytest.approx(((torch.sigmoid(LOGITS) - LABELS) ** 2).mean().item())
    values, target = torch.tensor([1.0, 2.0, 4.0]), torch.tensor([1.5, 2.0, 1.0])
    regression = losses.MeanSquaredError("regression")(values, target)
    assert regression.item() == pytest.approx(((values - target) ** 2).mean().item())


def test_huber_is_quadratic_inside_delta_and_linear_outside() -> None:
    output, target = torch.tensor([0.5, 3.0]), torch.tensor([0.0, 0.0])
    loss = losses.Huber("regression", delta=1.0)(output, target)
    assert loss.item() == pytest.approx((0.5 * 0.5**2 + 1.0 * (3.0 - 0.5)) / 2)
    assert loss.item() == pytest.approx(F.huber_loss(output, target, delta=1.0).item())


# --- categorical and numeric embeddings (docs/math.md, section 2) ------------------------------


def test_embedding_width_follows_fastais_rule() -> None:
    from mlpflow.model.embeddings import embedding_size

    assert [embedding_size(c) for c in (4, 10, 100, 1003)] == [
        round(1.6 * c**0.56) for c in (4, 10, 100, 1003)
    ]
    assert embedding_size(10**7) == 600


def test_one_hot_leaves_unknown_out_and_embeddings_start_unknown_at_zero() -> None:
    from mlpflow.data.transforms import FIRST_LEVEL, MISSING, RARE, UNKNOWN
    from mlpflow.model.embeddings import CategoricalInput

    torch.manual_seed(0)
    cardinalities = [FIRST_LEVEL + 2, FIRST_LEVEL + 20]  # 2 levels: one-hot; 20: an embedding
    layer = CategoricalInput(cardinalities, one_hot_max_levels=8)
    width = layer.embeddings[0].embedding_dim
    assert layer.out_features == (cardinalities[0] - 1) + width
    codes = torch.tensor([[UNKNOWN, UNKNOWN], [MISSING, RARE], [FIRST_LEVEL + 1, FIRST_LEVEL]])
    out = layer(codes)
    one_hot = out[:, : cardinalities[0] - 1]
    assert one_hot.tolist() == [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    assert torch.equal(out[0, cardinalities[0] - 1 :], torch.zeros(width))  # unknown: 0
    table = layer.embeddings[0].weight
    assert torch.equal(out[2, cardinalities[0] - 1 :], table[FIRST_LEVEL])


def test_columns_of_one_width_share_a_table_and_each_reads_its_own_rows() -> None:
    """One lookup per embedding width: column j's block is row offset_j + code of the shared
    table, which is what a table of its own would hold; every column's UNKNOWN row is zero."""
    from mlpflow.data.transforms import FIRST_LEVEL, UNKNOWN
    from mlpflow.model.embeddings import CategoricalInput, embedding_size

    torch.manual_seed(0)
    cardinalities = [FIRST_LEVEL + 400, FIRST_LEVEL + 30, FIRST_LEVEL + 405, FIRST_LEVEL + 5]
    assert embedding_size(cardinalities[0]) == embedding_size(cardinalities[2])
    layer = CategoricalInput(cardinalities, one_hot_max_levels=8, embedding_dim=None)
    assert layer.embedded == [[0, 2], [1]]  # 400 and 405 levels: one width; 5: one-hot
    assert len(layer.embeddings) == 2
    codes = torch.stack([torch.randint(0, c, (64,)) for c in cardinalities], dim=1)
    codes[0] = UNKNOWN
    out = layer(codes)
    shared, own = layer.embeddings[0].weight, layer.embeddings[1].weight
    width = shared.shape[1]
    blocks = out[:, cardinalities[3] - 1 :]  # after the one-hot column
    assert torch.equal(blocks[:, :width], shared[codes[:, 0]])
    assert torch.equal(blocks[:, width : 2 * width], shared[cardinalities[0] + codes[:, 2]])
    assert torch.equal(blocks[:, 2 * width :], own[codes[:, 1]])
    assert not blocks[0].any()  # UNKNOWN everywhere: zeros
    assert layer.out_features == out.shape[1] == (cardinalities[3] - 1) + 2 * width + own.shape[1]


def test_outside_autograd_a_large_batch_folds_the_categorical_blocks_into_the_first_layer() -> None:
    """Validation, evaluate and serving: W [dense, h_cat] + b computed as W_dense dense + b plus
    one summed lookup into each level's W_j e_j, the same outputs as the layers on the joined
    input; a small batch, or any batch in training, keeps the joined input."""
    from mlpflow.data.transforms import FIRST_LEVEL, UNKNOWN

    torch.manual_seed(0)
    cardinalities = [FIRST_LEVEL + 4, FIRST_LEVEL + 400, FIRST_LEVEL + 30, FIRST_LEVEL + 405]
    periodic = {"kind": "periodic", "n_frequencies": 4, "d_embedding": 3}
    net = MLP(6, 3, [16, 8], "tanh", 0.2, True, cardinalities=cardinalities, n_continuous=2,
              numeric_embedding=periodic).eval()  # fmt: skip
    layer = net.categorical
    assert layer.one_hot == [0] and layer.embedded == [[1, 3], [2]]
    x = torch.randn(3000, 6)
    codes = torch.stack([torch.randint(0, c, (3000,)) for c in cardinalities], dim=1)
    codes[0] = UNKNOWN
    with torch.no_grad():
        periodic = net.numeric_embedding(x[:, :2]).flatten(1)
        joined = torch.cat([periodic, x[:, 2:], layer(codes)], dim=1)
        expected = net.layers(joined)
        assert layer.folds(3000) and not layer.folds(1)
        assert torch.allclose(net(x, codes), expected, atol=1e-5)
        assert torch.equal(net(x[:1], codes[:1]), net.layers(joined[:1]))
    assert not layer.folds(3000)  # autograd on: training builds the joined input


PERIODIC = {"kind": "periodic", "n_frequencies": 4, "frequency_scale": 0.5, "d_embedding": 5}


def test_periodic_embedding_is_relu_of_a_linear_map_of_cos_and_sin() -> None:
    """Feature j's block of the input: ReLU(W_j [cos(2π c_j x_j), sin(2π c_j x_j)] + b_j),
    with its own frequencies c_j (trained, N(0, frequency_scale²) at the start), W_j and b_j."""
    torch.manual_seed(0)
    net = MLP(4, 1, [2], n_continuous=3, numeric_embedding=PERIODIC)
    frequencies = net.numeric_embedding.periodic.weight  # [3, 4]
    weight, bias = net.numeric_embedding.linear.weight, net.numeric_embedding.linear.bias
    assert frequencies.shape == (3, 4) and weight.shape == (3, 8, 5) and bias.shape == (3, 5)
    assert 0.2 < float(frequencies.detach().std()) < 1.0  # frequency_scale 0.5, not rtdl's 0.01
    x = torch.randn(7, 4)
    dense = net.dense_input(x)
    assert dense.shape == (7, 3 * 5 + 1) and net.input_width == 16
    for j in range(3):
        angles = 2 * torch.pi * frequencies[j] * x[:, j : j + 1]
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
        expected = torch.relu(periodic @ weight[j] + bias[j])
        torch.testing.assert_close(dense[:, 5 * j : 5 * (j + 1)], expected)
    assert torch.equal(dense[:, 15], x[:, 3])  # not continuous: as it is


def test_a_periodic_state_dict_under_the_old_names_loads_into_the_same_tensors() -> None:
    torch.manual_seed(0)
    net = MLP(4, 1, [2], n_continuous=3, numeric_embedding=PERIODIC)
    renamed = {"numeric_embedding.periodic.weight": "periodic.frequencies",
               "numeric_embedding.linear.weight": "periodic.weight",
               "numeric_embedding.linear.bias": "periodic.bias"}  # fmt: skip
    old = {renamed.get(k, k): v.clone() for k, v in net.state_dict().items()}
    assert set(renamed.values()) <= set(old)
    fresh = MLP(4, 1, [2], n_continuous=3, numeric_embedding=PERIODIC)
    fresh.load_state_dict(old)  # strict: every tensor found its place
    x = torch.randn(9, 4)
    assert torch.equal(fresh(x), net(x))


@pytest.mark.parametrize("activation", [False, True])
def test_piecewise_linear_encoding_follows_the_formula_on_its_bins(activation: bool) -> None:
    """x in bin t of edges b_0 < ... < b_T: e_s = 1 left of it, (x - b_{t-1}) / (b_t - b_{t-1})
    in it, 0 right of it (the first and last bins reach beyond the edges); then version B:
    a linear term x w_j + b_j plus W_j e (ReLU(W_j e) with activation), W_j zero at the start."""
    from mlpflow.model.embeddings import fit_bins

    torch.manual_seed(0)
    bins = [[-1.0, 0.0, 0.5, 2.0], [0.0, 1.0]]  # three bins; one
    options = {"kind": "piecewise_linear", "d_embedding": 3, "activation": activation}
    net = MLP(3, 1, [2], n_continuous=2, numeric_embedding=options, bins=bins)
    layer = net.numeric_embedding
    assert not layer.linear.weight.any()  # version B: starts as a linear embedding
    torch.nn.init.normal_(layer.linear.weight)
    values = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.2, 0.5, 1.0, 2.0, 5.0])
    x = torch.stack([values, values, torch.ones_like(values)], dim=1)

    def encoding(value: float, edges: list[float]) -> list[float]:
        count = len(edges) - 1
        bin_of = next((t for t in range(count - 1) if value < edges[t + 1]), count - 1)
        codes = []
        for t in range(count):
            ratio = (value - edges[t]) / (edges[t + 1] - edges[t])
            codes.append(1.0 if t < bin_of else ratio if t == bin_of else 0.0)
        return codes

    assert encoding(0.2, bins[0]) == [1.0, pytest.approx(0.4), 0.0]
    dense = net.dense_input(x)
    for j, edges in enumerate(bins):
        e = torch.tensor([encoding(float(v), edges) for v in values])
        weight, count = layer.linear.weight[j], len(edges) - 1  # rtdl: each last bin last
        w = torch.cat([weight[: count - 1], weight[-1:]])
        linear = x[:, j : j + 1] * layer.linear0.weight[j] + layer.linear0.bias[j]
        mapped = torch.relu(e @ w) if activation else e @ w
        torch.testing.assert_close(dense[:, 3 * j : 3 * (j + 1)], linear + mapped)
    assert torch.equal(dense[:, 6], x[:, 2])
    assert fit_bins({"kind": "periodic"}, x.numpy()) is None  # nothing to fit


def test_penalty_covers_embedding_tables_and_linear_maps_not_frequencies() -> None:
    model = {"numeric_embedding": {"kind": "periodic", "n_frequencies": 4, "d_embedding": 3}}
    net = MLP(5, 1, hidden_dims=[4], cardinalities=[15], n_continuous=2, **model)
    names = {name for name, p in net.named_parameters()}
    penalized = {id(p) for p in penalized_parameters(net)}
    chosen = {name for name, p in net.named_parameters() if id(p) in penalized}
    frequencies = "numeric_embedding.periodic.weight"
    assert chosen == {
        "numeric_embedding.linear.weight",
        "categorical.embeddings.0.weight",
        "layers.0.weight",
        "layers.2.weight",
    }
    assert frequencies in names and frequencies not in chosen
    with_bias = {name for name, p in net.named_parameters() if id(p) in
                 {id(q) for q in penalized_parameters(net, include_bias=True)}}  # fmt: skip
    assert with_bias == names - {frequencies}
