"""TabM (Gorishniy et al., "TabM: Advancing Tabular Deep Learning with Parameter-Efficient
Ensembling", ICLR 2025): k MLPs in one, built with the authors' `tabm` package.

The members share each layer's weight matrix W and differ by rank-one adapters (BatchEnsemble):
member m computes s_m ⊙ (W (r_m ⊙ x)) + b_m, so k members cost about one MLP's parameters.
They see the same batch, are trained on the mean of their losses and predict the mean of their
scores (docs/math.md, section 13). The input is mlpflow's (`TabularNetwork`): the categorical
columns and the missing-value indicators enter as they do for the MLP.
"""

from __future__ import annotations

import math
from typing import Any

import tabm
import torch
from torch import Tensor

from mlpflow.config.choices import ACTIVATIONS
from mlpflow.model.dropout import Dropout
from mlpflow.model.embeddings import TabularNetwork


class TabM(TabularNetwork):
    """In training mode: the members' raw outputs [N, k, n_outputs]. In eval mode: one output
    [N, n_outputs] whose score is the mean of the members' scores (`member_mean`), so that
    validation, evaluation and serving treat it like any other network."""

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int,
        task: str,
        k: int = 32,
        n_blocks: int = 3,
        d_block: int = 512,
        dropout: float = 0.1,
        activation: str = "relu",
        arch_type: str = "tabm",
        **inputs: Any,
    ) -> None:
        super().__init__(n_inputs, **inputs)
        self.task = task
        self.ensemble_view = tabm.EnsembleView(k=k)
        packed = arch_type == "tabm-packed"
        # the first adapter r starts as one random sign per raw feature (one normal draw per
        # feature with embeddings), as the `tabm` package's TabM.make chooses
        embedded = self.numeric_embedding is not None
        start = None if packed else "normal" if embedded else "random-signs"
        self.backbone = tabm.make_tabm_backbone(
            d_in=self.input_width,
            n_blocks=n_blocks,
            d_block=d_block,
            dropout=dropout,
            activation=ACTIVATIONS[activation],
            k=k,
            arch_type=arch_type,
            start_scaling_init=start,
            start_scaling_init_chunks=None if packed else self.input_chunks(),
        )
        for block in self.backbone.blocks:  # the cheaper mask (model/dropout.py)
            for index, layer in enumerate(block):
                if isinstance(layer, torch.nn.Dropout):
                    block[index] = Dropout(layer.p)
        self.output = OutputLayers(d_block, n_outputs, k=k)
        self.values_per_row = k * max(self.input_width, d_block, n_outputs)

    def forward(self, x: Tensor, codes: Tensor | None = None) -> Tensor:
        members = self.output(self.backbone(self.ensemble_view(self.joined_input(x, codes))))
        return members if self.training else member_mean(members, self.task)


class OutputLayers(tabm.LinearEnsemble):
    """tabm's LinearEnsemble: the members' k output layers. With one output (binary, regression)
    its batched product of the transposed activations [k, N, d] @ [k, d, 1] is one dot product
    per member and row, which a multiply and a sum over d compute directly, without the
    transposed copies: a TabM training step about a tenth cheaper on the CPU (benchmarks/README.md,
    Facts). The same parameters and initialization; the result equal up to float rounding."""

    def forward(self, x: Tensor) -> Tensor:
        if self.out_features != 1:
            return super().forward(x)
        out = (x * self.weight.squeeze(-1)).sum(dim=-1, keepdim=True)
        return out if self.bias is None else out + self.bias


def member_mean(members: Tensor, task: str) -> Tensor:
    """Members' outputs [N, k, d] -> one output [N, d] scored as the mean of their scores: the
    logit of the mean probability (binary), the log of the mean class probabilities
    (multiclass: its softmax is that mean), the mean value (regression). In log space, so a
    member's saturated probability stays finite."""
    log_k = math.log(members.shape[1])
    if task == "binary":
        positive = torch.logsumexp(torch.nn.functional.logsigmoid(members), dim=1) - log_k
        negative = torch.logsumexp(torch.nn.functional.logsigmoid(-members), dim=1) - log_k
        return positive - negative
    if task == "multiclass":
        return torch.logsumexp(torch.log_softmax(members, dim=-1), dim=1) - log_k
    return members.mean(dim=1)
