"""Stage 2 as a LightningModule: trains an injected sequence network with its loss and AdamW.

It only trains: prediction and the reported metrics belong to the estimator that wraps it
(:class:`dfer_pd.stage2.classifiers.ResidualRNNEstimator`) and to :mod:`dfer_pd.stage2.metrics`.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from dfer_pd.stage2.metrics import classification_metrics
from dfer_pd.stage2.settings import LOSS_OUTPUTS



def pd_probability(logits: torch.Tensor, loss: str) -> torch.Tensor:
    """P(PD) from the logits of a network trained with ``loss`` ("bce": one logit, "ce": two)."""
    if loss == "bce":
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=-1)[:, 1]


class PDClassifierModule(L.LightningModule):
    """Trains ``network`` on per-subject sequences (batch, 4 steps, features); batches are ``(inputs, labels)``.

    ``loss="bce"`` needs a network with one logit and uses BCE-with-logits, ``loss="ce"`` two logits and
    cross-entropy. Logs ``train/loss`` and ``val/loss`` (what early stopping and best-weight selection
    monitor); with ``validation_metrics`` or a logger attached, also ``val/<metric>`` for every
    :data:`~dfer_pd.stage2.metrics.METRIC_NAMES` from :func:`~dfer_pd.stage2.metrics.classification_metrics`,
    the function the CV reports.
    """

    def __init__(
        self,
        network: nn.Module,
        loss: Literal["bce", "ce"] = "bce",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        validation_metrics: bool = False,
    ) -> None:
        super().__init__()
        if loss not in LOSS_OUTPUTS:
            raise ValueError(f"loss must be one of {sorted(LOSS_OUTPUTS)}, got {loss!r}")
        outputs = getattr(network, "num_outputs", None)
        if outputs != LOSS_OUTPUTS[loss]:
            raise ValueError(f"loss {loss!r} needs a network with {LOSS_OUTPUTS[loss]} output(s), got {outputs}")
        self.save_hyperparameters(ignore=["network"])
        self.net = network
        self._validation: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def loss_fn(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels.long())

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        loss = self.loss_fn(self(inputs), labels)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, labels = batch
        logits = self(inputs)
        self.log("val/loss", self.loss_fn(logits, labels), on_step=False, on_epoch=True, prog_bar=True,
                 batch_size=len(labels))
        if self.hparams.validation_metrics or self.logger is not None:  # only then pay for the per-epoch metrics
            self._validation.append((pd_probability(logits, self.hparams.loss).cpu(), labels.cpu()))

    def on_validation_epoch_end(self) -> None:
        if not self._validation:
            return
        p_pd = torch.cat([p for p, _ in self._validation]).double().numpy()
        labels = torch.cat([y for _, y in self._validation]).numpy()
        self._validation.clear()
        metrics = classification_metrics(labels, p_pd)
        self.log_dict({f"val/{name}": value for name, value in metrics.items()})

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
