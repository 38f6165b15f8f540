"""Residual LSTM/GRU classifier over the four expression videos of a subject (the paper's Sec. 2.3)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

RNN_CELLS: dict[str, type[nn.RNNBase]] = {"lstm": nn.LSTM, "gru": nn.GRU}


class ResidualRNNClassifier(nn.Module):
    """Stacked single-layer LSTM/GRU blocks with identity shortcuts, read out at the last step.

    The input is first projected to ``hidden_size`` so every block's input and output have the same
    width; with ``residual=True`` each block computes ``h_{l+1} = h_l + dropout(RNN_l(h_l))``, without
    it ``h_{l+1} = dropout(RNN_l(h_l))`` (the plain stacked network of the ablation). A linear head on
    the last time step gives ``num_outputs`` logits: 1 for a BCE-with-logits loss, 2 for cross-entropy.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        cell: Literal["lstm", "gru"] = "lstm",
        residual: bool = True,
        dropout: float = 0.2,
        num_outputs: int = 1,
    ) -> None:
        super().__init__()
        if cell not in RNN_CELLS:
            raise ValueError(f"cell must be one of {sorted(RNN_CELLS)}, got {cell!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if num_outputs not in (1, 2):
            raise ValueError(f"num_outputs must be 1 (BCE) or 2 (cross-entropy), got {num_outputs}")
        self.residual = residual
        self.num_outputs = num_outputs
        self.input_projection = nn.Linear(input_size, hidden_size)
        self.layers = nn.ModuleList(
            RNN_CELLS[cell](hidden_size, hidden_size, num_layers=1, batch_first=True) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_outputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """``inputs`` (batch, steps, input_size) -> logits (batch,) for one output, else (batch, num_outputs)."""
        hidden = self.input_projection(inputs)
        for layer in self.layers:
            output, _ = layer(hidden)
            output = self.dropout(output)
            hidden = hidden + output if self.residual else output
        logits = self.head(hidden[:, -1])
        return logits.squeeze(-1) if logits.shape[-1] == 1 else logits
