"""Stage 2 as a LightningModule: wires ResidualRNNClassifier, its loss, AdamW and binary PD metrics."""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    BinarySpecificity,
)

from dfer_pd.stage2.sequence_classifier import ResidualRNNClassifier

LOSS_OUTPUTS: dict[str, int] = {"bce": 1, "ce": 2}


def pd_metrics(prefix: str) -> MetricCollection:
    """PD-as-positive binary metrics on P(PD); a fresh collection per module, so state resets per fold."""
    return MetricCollection(
        {
            "accuracy": BinaryAccuracy(),
            "precision": BinaryPrecision(),
            "recall": BinaryRecall(),
            "specificity": BinarySpecificity(),
            "f1": BinaryF1Score(),
            "auroc": BinaryAUROC(),
        },
        prefix=prefix,
    )


class PDClassifierModule(L.LightningModule):
    """PD vs HC from per-subject sequences (batch, 4 steps, features); batches are ``(inputs, labels)``.

    ``loss="bce"`` uses one logit and BCE-with-logits, ``loss="ce"`` two logits and cross-entropy;
    either way :meth:`predict_proba` returns P(PD).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 64,
        num_layers: int = 2,
        cell: Literal["lstm", "gru"] = "lstm",
        residual: bool = True,
        dropout: float = 0.2,
        loss: Literal["bce", "ce"] = "bce",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if loss not in LOSS_OUTPUTS:
            raise ValueError(f"loss must be one of {sorted(LOSS_OUTPUTS)}, got {loss!r}")
        self.save_hyperparameters()
        self.net = ResidualRNNClassifier(
            input_size=input_size,
            hidden_size=hidden_size,
            num_layers=num_layers,
            cell=cell,
            residual=residual,
            dropout=dropout,
            num_outputs=LOSS_OUTPUTS[loss],
        )
        self.train_metrics = pd_metrics("train/")
        self.val_metrics = pd_metrics("val/")
        self.test_metrics = pd_metrics("test/")

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def loss_fn(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.hparams.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels.long())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """P(PD) from the network's logits."""
        if self.hparams.loss == "bce":
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=-1)[:, 1]

    @torch.no_grad()
    def predict_proba(self, inputs: torch.Tensor) -> torch.Tensor:
        """P(PD) for a batch of sequences, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self.probabilities(self(inputs.to(self.device)))
        finally:
            self.train(was_training)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], metrics: MetricCollection, stage: str) -> torch.Tensor:
        inputs, labels = batch
        logits = self(inputs)
        loss = self.loss_fn(logits, labels)
        metrics.update(self.probabilities(logits.detach()), labels.long())
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", batch_size=len(labels))
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._step(batch, self.train_metrics, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, self.test_metrics, "test")

    def predict_step(self, batch: tuple[torch.Tensor, ...] | torch.Tensor, batch_idx: int) -> torch.Tensor:
        inputs = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self(inputs))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
