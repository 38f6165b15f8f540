"""Stage 1 as a LightningModule: wires DferClip (built from its config), cross-entropy, the optimiser recipe and WAR/UAR."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import lightning as L
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torchmetrics import MetricCollection  # noqa: E402
from torchmetrics.classification import (  # noqa: E402
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassRecall,
)

from dfer_pd.stage1.modeling_dfer_clip import DferClip, DferClipConfig  # noqa: E402

log = logging.getLogger(__name__)

# Beside test_confusion_matrix.png in the run folder: {"class_names": [...], "matrix": rows = true class}.
CONFUSION_FILE = "test_confusion_matrix.json"


def expression_metrics(prefix: str, num_classes: int) -> MetricCollection:
    """WAR = accuracy over clips; UAR = mean of per-class recalls (DFEW's two headline numbers)."""
    return MetricCollection(
        {
            "war": MulticlassAccuracy(num_classes, average="micro"),
            "uar": MulticlassRecall(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class TorchThreads(L.Callback):
    """torch's intra-op threads while the Trainer runs (restored after), set in ``trainer.callbacks``.

    On a CPU with few cores the loader workers and a second job (the demo renders its cohort beside
    stage 1) share the cores; two threads that wait for each other at every operation then ran the
    demo's epochs at 3.1 s against 2.2 s with one thread (docs/performance.md).
    """

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.threads = threads
        self._before: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._before is None:
            self._before = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._before is not None:
            torch.set_num_threads(self._before)
            self._before = None


class DferClipModule(L.LightningModule):
    """Trains the expression-intensity network built from ``network`` with the paper's optimiser recipe.

    The checkpoint's ``hyper_parameters['network']`` is the network's resolved config (classes, frames,
    tau, image size and normalisation): what the scoring contract reads, without building the network.

    Args:
        network: the expression network's settings (saved in every checkpoint).
        optimizer: sgd (with momentum) or adamw.
        lr_image_encoder: learning rate of CLIP's vision tower (fine-tuned).
        lr_temporal: learning rate of the frame gate and the temporal transformer.
        lr_prompt: learning rate of the prompts' learnable context vectors.
        momentum: SGD momentum.
        weight_decay: weight decay of every parameter group.
        scheduler: learning-rate schedule per epoch: multistep (milestones, gamma), cosine (to max_epochs) or none.
        milestones: epochs at which multistep multiplies the learning rates by gamma.
        gamma: multistep's factor.
        label_smoothing: label smoothing of the cross-entropy loss.
    """

    def __init__(
        self,
        network: DferClipConfig = DferClipConfig(),
        optimizer: Literal["sgd", "adamw"] = "sgd",
        lr_image_encoder: float = 1e-5,
        lr_temporal: float = 1e-3,
        lr_prompt: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        scheduler: Literal["multistep", "cosine", "none"] = "multistep",
        milestones: list[int] = [30, 40],  # noqa: B006 - jsonargparse needs a literal default
        gamma: float = 0.1,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = DferClip(network)
        self.save_hyperparameters()
        # The resolved config (image size and normalisation filled in), however the module was given it:
        # LightningCLI hands save_hyperparameters the parsed arguments rather than these locals.
        self.hparams["network"] = self._hparams_initial["network"] = self.net.config.to_dict()
        self.num_classes = len(self.net.class_names)
        self.val_metrics = expression_metrics("val/", self.num_classes)
        self.test_metrics = expression_metrics("test/", self.num_classes)
        self.val_class_recall = MulticlassRecall(self.num_classes, average=None)
        self.test_class_recall = MulticlassRecall(self.num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)
        self.best_val_uar: float | None = None  # logged as val/uar_best: what a sweep optimises (not the last epoch's)
        # Each epoch's validation WAR/UAR, kept in the checkpoints: the run summary reports the selected epoch's.
        self.val_history: dict[int, dict[str, float]] = {}

    def on_fit_start(self) -> None:
        """Record the data each split really holds (class counts, clips skipped) with the run's config."""
        datamodule = getattr(self.trainer, "datamodule", None)
        counts = getattr(datamodule, "split_counts", None)
        if counts and self.logger is not None:
            self.logger.log_hyperparams({"data_class_counts": counts, "data_skipped_clips": len(datamodule.skipped)})

    def forward(self, pixel_values: torch.Tensor):
        return self.net(pixel_values)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits = self.net(batch["pixel_values"]).logits
        loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=self.hparams.label_smoothing)
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        self.log("train/loss", loss, prog_bar=True, batch_size=len(logits))
        self.log("train/acc", accuracy, batch_size=len(logits))
        return loss

    def _evaluate(self, batch: dict, metrics: MetricCollection, class_recall: MulticlassRecall, prefix: str) -> torch.Tensor:
        logits = self.net(batch["pixel_values"]).logits.float()
        loss = F.cross_entropy(logits, batch["label"])
        metrics.update(logits, batch["label"])
        class_recall.update(logits, batch["label"])
        self.log(f"{prefix}loss", loss, batch_size=len(logits), sync_dist=True)
        return logits

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, self.val_class_recall, "val/")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        logits = self._evaluate(batch, self.test_metrics, self.test_class_recall, "test/")
        self.test_confusion.update(logits, batch["label"])

    def _log_epoch(self, metrics: MetricCollection, class_recall: MulticlassRecall, prefix: str) -> None:
        self.log_dict(metrics.compute(), prog_bar=True)
        recalls = class_recall.compute()
        self.log_dict({f"{prefix}recall_{name}": recalls[i] for i, name in enumerate(self.net.class_names)})
        metrics.reset()
        class_recall.reset()

    def on_validation_epoch_end(self) -> None:
        uar = float(self.val_metrics["uar"].compute()) if not self.trainer.sanity_checking else None
        if uar is not None:
            self.val_history[int(self.current_epoch)] = {k: float(v) for k, v in self.val_metrics.compute().items()}
        self._log_epoch(self.val_metrics, self.val_class_recall, "val/")
        if uar is not None:
            self.best_val_uar = uar if self.best_val_uar is None else max(self.best_val_uar, uar)
            self.log("val/uar_best", self.best_val_uar)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.best_val_uar is not None:
            checkpoint["val_uar_best"] = self.best_val_uar  # a resumed run keeps its running best
        checkpoint["val_history"] = {str(epoch): dict(metrics) for epoch, metrics in self.val_history.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.best_val_uar = checkpoint.get("val_uar_best")
        self.val_history = {int(epoch): dict(metrics) for epoch, metrics in checkpoint.get("val_history", {}).items()}

    def selected_validation(self, checkpoint_path: str | Path) -> dict[str, float]:
        """The validation figures of the epoch a checkpoint was saved at (the one model selection chose):
        ``val/war``, ``val/uar`` and ``val/epoch``; empty when that epoch was not validated in this history."""
        import torch

        epoch = int(torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)["epoch"])
        figures = self.val_history.get(epoch)
        return {**figures, "val/epoch": epoch} if figures else {}

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, self.test_class_recall, "test/")
        matrix = self.test_confusion.compute()
        self.test_confusion.reset()
        if self.trainer.is_global_zero:
            self._save_confusion(matrix)

    def _save_confusion(self, matrix: torch.Tensor) -> None:
        """Confusion matrix as PNG beside the run, and as an image on W&B when that logger is used."""
        from dfer_pd.common.files import atomic_write_json
        from dfer_pd.common.plots import save_confusion_matrix

        out_dir = Path(self.trainer.default_root_dir)
        matrix = matrix.cpu().numpy()
        path = save_confusion_matrix(matrix, out_dir / "test_confusion_matrix.png", list(self.net.class_names),
                                     f"Stage 1, test fold: {int(matrix.sum())} clips")
        log.info("confusion matrix written to %s: %s", path, matrix.tolist())
        # The counts too, for reports that sum folds (dfer_pd.stage1.folds).
        atomic_write_json(out_dir / CONFUSION_FILE, {"class_names": list(self.net.class_names),
                                                     "matrix": matrix.astype(int).tolist()})
        for logger in self.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="test/confusion_matrix", images=[str(path)])

    def configure_optimizers(self):
        hp = self.hparams
        lrs = {"image_encoder": hp.lr_image_encoder, "temporal": hp.lr_temporal, "prompt": hp.lr_prompt}
        groups = [
            {"params": params, "lr": lrs[name], "name": name}
            for name, params in self.net.param_groups().items()
            if params
        ]
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            optimizer = torch.optim.AdamW(groups, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return optimizer
        if hp.scheduler == "multistep":
            scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(hp.milestones), gamma=hp.gamma)
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs or 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
