"""Many residual LSTM/GRU fits at once: one batched ensemble with grouped (stacked) weights.

Cross-validation with repeats, the Table 3 rows and the permutation test each need dozens to hundreds of
fits of a network with a few thousand parameters on about a hundred sequences. One at a time, each fit
is mostly per-step overhead. Here every fit is a *member* of an ensemble whose weights are stacked along
a leading axis, so one batched matmul steps all members at once.

Each member follows the recipe of the one-network Lightning fit (:meth:`ResidualRNNEstimator.fit` with
``engine="lightning"``) step for step: the same stratified validation split, the same initial weights
(built by the same seeded constructor), the same batch order (its own loader generator, drawn as
PyTorch's ``DataLoader`` draws), the same dropout masks (its own generator, replaying the global stream
the single fit draws from), AdamW, early stopping on the validation loss with the same patience and the
weights of its best epoch. Members stop on their own; finished members leave the batch. Only rounding
differs (batched matmuls here, oneDNN's fused LSTM kernel there): ``tests/stage2/test_ensemble.py`` states the
tolerance. Members of a group share the network shape, loss, optimiser settings and steps per epoch;
their input width, residual path, dropout, patience, epochs, seeds and data may differ.
"""

from __future__ import annotations

import contextvars
import functools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from dfer_pd.stage2.runtime import current_runtime
from dfer_pd.stage2.settings import NETWORK_OUTPUTS, REGRESSION_LOSS, RuntimeSettings
from dfer_pd.stage2.sequence_classifier import RNN_CELLS, ResidualRNNClassifier
from dfer_pd.stage2.splits import validation_split



class ResidualRNNEstimator(Protocol):
    """What the batched engine needs of a member (``dfer_pd.stage2.classifiers.ResidualRNNEstimator`` is one;
    named here as a protocol so that this module does not import the estimators that import it)."""

    cell: str
    residual: bool
    dropout: float
    loss: str
    lr: float
    weight_decay: float
    max_epochs: int
    batch_size: int
    patience: int
    val_fraction: float
    split_seed: int
    random_state: int
    n_epochs_: int
    fit_seconds_: float

    def build_network(self, input_size: int) -> ResidualRNNClassifier: ...

    def check_training_rows(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def validation_strata(self, targets: np.ndarray) -> np.ndarray: ...

    def set_fitted(self, state: dict, classes: np.ndarray, best_epoch: int | None, n_epochs: int,
                   history: list[dict[str, float]] | None = None) -> ResidualRNNEstimator: ...

GATES = {"lstm": 4, "gru": 3}
ProgressCallback = Callable[[float], None]
"""Receives the share of one fit that just completed (members advance by ``1 / max_epochs`` per epoch)."""


@functools.cache
def _rnn_output_memory_order(cell: str) -> tuple[int, ...]:
    """How ``nn.LSTM``/``nn.GRU(batch_first=True)`` lay out their (batch, time, hidden) output in memory.

    ``nn.Dropout`` fills its noise in the memory order of its input (time-major on the CPU), so a mask
    drawn for the same stream must be drawn in that order too.
    """
    layer = RNN_CELLS[cell](2, 2, batch_first=True)
    with torch.no_grad():
        output, _ = layer(torch.zeros(3, 5, 2))
    return tuple(sorted(range(3), key=lambda d: -output.stride(d)))


@functools.cache
def _uniform_draws_match_bernoulli() -> bool:
    """Whether ``torch.rand(float64) < p`` reproduces ``bernoulli_(p)`` draw for draw (it does for the CPU
    generator's per-element kernel), leaving the generator in the same state."""
    first, second = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    drawn = torch.cat([torch.empty(3, 2, 5).bernoulli_(0.7, generator=first).flatten() for _ in range(2)])
    uniform = (torch.rand(60, dtype=torch.float64, generator=second) < 0.7).float()
    return torch.equal(drawn, uniform) and torch.equal(first.get_state(), second.get_state())


def dropout_noise(shape: tuple[int, int, int], p: float, generator: torch.Generator, cell: str) -> torch.Tensor:
    """The (batch, time, hidden) noise ``nn.Dropout(p)`` would multiply an RNN output by, drawn from ``generator``."""
    order = _rnn_output_memory_order(cell)
    noise = torch.empty([shape[d] for d in order]).bernoulli_(1 - p, generator=generator)
    return noise.div_(1 - p).permute([order.index(d) for d in range(3)])


def _runs(values: list[int]) -> list[tuple[int, int, int]]:
    """(start, value, length) of each run of equal consecutive values."""
    runs: list[tuple[int, int, int]] = []
    for i, value in enumerate(values):
        if runs and runs[-1][1] == value:
            runs[-1] = (runs[-1][0], value, runs[-1][2] + 1)
        else:
            runs.append((i, value, 1))
    return runs


def resolve_device(accelerator: str) -> torch.device:
    """Lightning's accelerator names mapped to a torch device: a GPU when asked for (or "auto") and present."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator in ("gpu", "cuda"):
        raise ValueError(f"accelerator {accelerator!r} asked for a GPU, but torch sees none")
    if accelerator not in ("cpu", "auto"):
        raise ValueError(f"the batched engine runs on accelerator cpu, gpu or auto, got {accelerator!r}")
    return torch.device("cpu")


@dataclass
class _Member:
    """One fit: its estimator (settings), scaled training rows split into fit/validation rows, and its generators."""

    estimator: ResidualRNNEstimator
    classes: np.ndarray  # a regressor's: its target scaling (check_training_rows' third value, back to set_fitted)
    x_fit: torch.Tensor  # (n_fit, T, F) float32
    y_fit: torch.Tensor  # (n_fit,) int64 in {0, 1}; float32 targets for the regression loss
    x_val: torch.Tensor  # (n_val, T, F)
    y_val: torch.Tensor
    network: ResidualRNNClassifier  # initial weights
    dropout_rng: torch.Generator
    loader_rng: torch.Generator
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def n_batches(self) -> int:
        return math.ceil(len(self.y_fit) / self.estimator.batch_size)


def _prepare(estimator: ResidualRNNEstimator, X: np.ndarray, y: np.ndarray) -> _Member:
    """Everything the one-network fit sets up before its first step, in the same order and from the same seeds."""
    X, labels, classes = estimator.check_training_rows(X, y)
    strata = estimator.validation_strata(labels) if hasattr(estimator, "validation_strata") else labels
    fit_idx, val_idx = validation_split(strata, np.arange(len(X)), estimator.val_fraction, estimator.split_seed)
    target_type = torch.float32 if estimator.loss == REGRESSION_LOSS else torch.long
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(estimator.random_state)  # what L.seed_everything does to torch's generator
        network = estimator.build_network(X.shape[-1])
        dropout_rng = torch.Generator()
        dropout_rng.set_state(torch.get_rng_state())  # dropout draws from where the global stream stands now
    loader_rng = torch.Generator().manual_seed(estimator.random_state)
    as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    return _Member(
        estimator=estimator, classes=classes,
        x_fit=as_tensor(X[fit_idx]), y_fit=torch.as_tensor(labels[fit_idx], dtype=target_type),
        x_val=as_tensor(X[val_idx]), y_val=torch.as_tensor(labels[val_idx], dtype=target_type),
        network=network, dropout_rng=dropout_rng, loader_rng=loader_rng,
    )


def _group_key(member: _Member) -> tuple:
    e = member.estimator
    return (e.cell, e.hidden_size, e.num_layers, e.loss, float(e.lr), float(e.weight_decay), e.batch_size,
            member.n_batches, tuple(member.x_fit.shape[1:2]))


def fit_members(
    estimators: Sequence[ResidualRNNEstimator],
    inputs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    runtime: RuntimeSettings = RuntimeSettings(),
    progress: ProgressCallback | None = None,
) -> list[ResidualRNNEstimator]:
    """Fit every estimator on its own (already scaled) rows, batching the compatible ones; returns them fitted.

    Each estimator ends exactly as its own ``fit`` would leave it (``network_``, ``classes_``,
    ``best_epoch_``, ``n_epochs_``) plus ``history_``: per epoch ``train/loss``, ``val/loss`` and
    ``val/accuracy``, for learning curves. ``runtime`` gives the device and the torch threads.
    """
    if not len(estimators) == len(inputs) == len(labels):
        raise ValueError(f"{len(estimators)} estimators, {len(inputs)} inputs and {len(labels)} label arrays")
    device = resolve_device(runtime.accelerator)
    members = [_prepare(e, X, y) for e, X, y in zip(estimators, inputs, labels)]
    groups: dict[tuple, list[_Member]] = defaultdict(list)
    for member in members:
        groups[_group_key(member)].append(member)
    from dfer_pd.common.parallel import torch_threads

    for group in groups.values():
        started = time.perf_counter()
        with torch_threads(runtime.threads):
            _GroupTrainer(group, device, progress).run()
        seconds, epochs = time.perf_counter() - started, sum(m.estimator.n_epochs_ for m in group)
        for member in group:  # the group's wall time, shared in proportion to the epochs each member trained
            member.estimator.fit_seconds_ = seconds * member.estimator.n_epochs_ / epochs
    return list(estimators)


_OPEN_BATCH: contextvars.ContextVar[NetworkBatch | None] = contextvars.ContextVar("network_batch", default=None)


class NetworkBatch:
    """The residual networks fitted inside a ``with`` block, trained together when it ends (batched engine).

    A network's ``fit`` (through ``Pipeline.fit`` as it is) only queues its rows here; the queued networks
    train together, as one stacked ensemble (:func:`fit_members`) on the :func:`current_runtime`, when the
    block ends, and are fitted only then. Outside any block a network trains at once.
    """

    def __init__(self, progress: ProgressCallback | None = None) -> None:
        self.progress = progress
        self.queued: dict[int, tuple[ResidualRNNEstimator, np.ndarray, np.ndarray]] = {}  # by id(estimator)
        self._token: contextvars.Token | None = None

    def __enter__(self) -> NetworkBatch:
        self._token = _OPEN_BATCH.set(self)
        return self

    def __exit__(self, kind, error, traceback) -> None:
        _OPEN_BATCH.reset(self._token)
        if error is None and self.queued:
            estimators, inputs, labels = zip(*self.queued.values())
            fit_members(estimators, inputs, labels, current_runtime(), self.progress)

    def holds(self, estimator: object) -> bool:
        """Whether ``estimator`` is queued here (so it is fitted when the block ends)."""
        return id(estimator) in self.queued

    def queue(self, estimator: ResidualRNNEstimator, X: np.ndarray, y: np.ndarray) -> None:
        self.queued[id(estimator)] = (estimator, X, y)  # fitted twice in one block: the last rows count


def open_batch() -> NetworkBatch | None:
    """The :class:`NetworkBatch` this code runs inside, if any."""
    return _OPEN_BATCH.get()


class _GroupTrainer:
    """Trains one group of compatible members in lockstep; members finish (and leave) independently."""

    def __init__(self, members: list[_Member], device: torch.device, progress: ProgressCallback | None) -> None:
        first = members[0].estimator
        self.members = members
        self.device = device
        self.progress = progress
        self.cell, self.loss = first.cell, first.loss
        self.hidden, self.layers = first.hidden_size, first.num_layers
        self.batch_size, self.n_batches = first.batch_size, members[0].n_batches
        self.steps = members[0].x_fit.shape[1]
        self.width = max(m.x_fit.shape[-1] for m in members)
        self.gates = GATES[self.cell]
        self.outputs = NETWORK_OUTPUTS[self.loss]
        self.lr, self.weight_decay = float(first.lr), float(first.weight_decay)
        # Per-member settings and data, stacked.
        self.params = self._stack_parameters()
        self.residual = self._column([float(m.estimator.residual) for m in members]).view(-1, 1, 1)
        self.dropout = [float(m.estimator.dropout) for m in members]
        self.patience = [int(m.estimator.patience) for m in members]
        self.max_epochs = [int(m.estimator.max_epochs) for m in members]
        self.x_fit, self.y_fit = self._pad([m.x_fit for m in members]), self._pad([m.y_fit for m in members])
        self.n_fit = [len(m.y_fit) for m in members]
        self.x_val, self.y_val = self._pad([m.x_val for m in members]), self._pad([m.y_val for m in members])
        self.n_val = [len(m.y_val) for m in members]
        self.val_weight = self._row_weights(self.n_val, self.y_val.shape[1])
        self.best = {name: p.detach().clone() for name, p in self.params.items()}
        self.has_best = torch.zeros(len(members), dtype=torch.bool)
        self.best_loss = torch.full((len(members),), math.inf)
        self.best_epoch: list[int | None] = [None] * len(members)
        self.wait = torch.zeros(len(members), dtype=torch.long)
        self.optimizer = self._optimizer()

    # -- set-up ------------------------------------------------------------------------------------
    def _column(self, values: list[float]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=self.device)

    def _pad(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Stack per-member rows, zero-padding the row count and (for inputs) the feature width."""
        rows = max(1, max(len(t) for t in tensors))
        padded = []
        for t in tensors:
            pad = [0, 0] * (t.dim() - 1) + [0, rows - len(t)]
            if t.dim() == 3:
                pad[0:2] = [0, self.width - t.shape[-1]]
            padded.append(F.pad(t, pad))
        return torch.stack(padded).to(self.device)

    def _row_weights(self, counts: list[int], rows: int) -> torch.Tensor:
        """1 / n on each member's real rows, 0 on padding: weighted sums are per-member means."""
        weights = torch.zeros(len(counts), rows)
        for i, n in enumerate(counts):
            if n:
                weights[i, :n] = 1.0 / n
        return weights.to(self.device)

    def _stack_parameters(self) -> dict[str, torch.Tensor]:
        """Each member's initial ResidualRNNClassifier weights, transposed for ``bmm`` and stacked (inputs zero-padded)."""
        def stack(get) -> torch.Tensor:
            return torch.stack([get(m.network).detach() for m in self.members]).to(self.device).requires_grad_(True)

        def projection(net: ResidualRNNClassifier) -> torch.Tensor:
            weight = net.input_projection.weight.T  # (F, H)
            return F.pad(weight, (0, 0, 0, self.width - weight.shape[0]))

        params = {
            "proj_w": stack(projection),
            "proj_b": stack(lambda n: n.input_projection.bias[None]),
            "head_w": stack(lambda n: n.head.weight.T),
            "head_b": stack(lambda n: n.head.bias[None]),
        }
        for layer in range(self.layers):
            params[f"w_ih{layer}"] = stack(lambda n, l=layer: n.layers[l].weight_ih_l0.T)
            params[f"w_hh{layer}"] = stack(lambda n, l=layer: n.layers[l].weight_hh_l0.T)
            params[f"b_ih{layer}"] = stack(lambda n, l=layer: n.layers[l].bias_ih_l0[None])
            params[f"b_hh{layer}"] = stack(lambda n, l=layer: n.layers[l].bias_hh_l0[None])
        return params

    def _optimizer(self, state: dict[str, dict[str, torch.Tensor]] | None = None) -> torch.optim.Optimizer:
        """AdamW over the stacked weights: element-wise, so each member's update is its own."""
        fused = self.device.type in ("cpu", "cuda")
        optimizer = torch.optim.AdamW(list(self.params.values()), lr=self.lr, weight_decay=self.weight_decay,
                                      fused=fused)
        if state:
            for name, p in self.params.items():
                optimizer.state[p] = state[name]
        return optimizer

    # -- the network, batched over members ---------------------------------------------------------
    def forward(self, x: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """(E, T, B, F) time-major inputs -> logits (E, B, outputs).

        ``masks`` (layers, E, T, B, H), pre-scaled, switch dropout on. Time steps are kept as a list of
        (E, B, H) tensors so that autograd never scatters a slice's gradient into a zero-filled copy of a
        whole sequence; only the last layer's last step reaches the head.
        """
        p = self.params
        members, steps, batch, width = x.shape
        projected = torch.baddbmm(p["proj_b"], x.reshape(members, steps * batch, width), p["proj_w"])
        inputs = projected.view(members, steps, batch, self.hidden)
        sequence = list(inputs.unbind(1))
        for layer in range(self.layers):
            outputs = self._recurrent(inputs, layer)
            last = layer == self.layers - 1
            keep = [steps - 1] if last else range(steps)
            new = []
            for t in keep:
                output = outputs[t] if masks is None else outputs[t] * masks[layer, :, t]
                new.append(output + sequence[t] * self.residual)
            sequence = new
            if not last:
                inputs = torch.stack(sequence, dim=1)
        return torch.baddbmm(p["head_b"], sequence[-1], p["head_w"])

    def _recurrent(self, inputs: torch.Tensor, layer: int) -> list[torch.Tensor]:
        """One LSTM/GRU layer over (E, T, B, H) inputs: the outputs of each step, as nn.LSTM/nn.GRU compute them."""
        p = self.params
        members, steps, batch, size = inputs.shape
        w_hh, b_hh = p[f"w_hh{layer}"], p[f"b_hh{layer}"]
        if self.cell == "lstm":  # both biases are added to every gate: fold them into the input part
            bias = p[f"b_ih{layer}"] + b_hh
        else:  # GRU: the hidden bias of the new gate sits inside the reset product
            bias = p[f"b_ih{layer}"]
        gates_x = torch.baddbmm(bias, inputs.reshape(members, steps * batch, size), p[f"w_ih{layer}"])
        gates_x = gates_x.view(members, steps, batch, self.gates * size).unbind(1)
        h = c = None
        outputs = []
        for gx in gates_x:
            if self.cell == "lstm":
                gates = gx if h is None else torch.baddbmm(gx, h, w_hh)
                i, f, g, o = gates.chunk(4, dim=-1)
                i, g, o = torch.sigmoid(i), torch.tanh(g), torch.sigmoid(o)
                c = i * g if c is None else torch.sigmoid(f) * c + i * g
                h = o * torch.tanh(c)
            else:
                x_r, x_z, x_n = gx.chunk(3, dim=-1)
                if h is None:
                    h_r, h_z, h_n = b_hh.chunk(3, dim=-1)
                else:
                    h_r, h_z, h_n = torch.baddbmm(b_hh, h, w_hh).chunk(3, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                n = torch.tanh(x_n + r * h_n)
                h = n - z * n if h is None else n + z * (h - n)
            outputs.append(h)
        return outputs

    def member_losses(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-row loss (E, B), as the one-network module computes it."""
        if self.loss == REGRESSION_LOSS:
            return F.mse_loss(logits[..., 0], labels.float(), reduction="none")
        if self.loss == "bce":
            return F.binary_cross_entropy_with_logits(logits[..., 0], labels.float(), reduction="none")
        flat = F.cross_entropy(logits.reshape(-1, self.outputs), labels.reshape(-1), reduction="none")
        return flat.view(labels.shape)

    # -- training ----------------------------------------------------------------------------------
    def _epoch_batches(self) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        """Each member's batch order for one epoch, drawn exactly as a Trainer iterating ``DataLoader(shuffle=True, generator=g)`` draws it."""
        count = len(self.members)
        index = torch.zeros(count, self.n_batches * self.batch_size, dtype=torch.long)
        sizes = []
        for i, member in enumerate(self.members):
            n, rng = self.n_fit[i], member.loader_rng
            torch.empty((), dtype=torch.int64).random_(generator=rng)  # the loader iterator's base seed
            index[i, :n] = torch.randperm(n, generator=rng)
            if n % self.batch_size:
                # RandomSampler's trailing (empty) draw runs when the batch sampler exhausts it to build the
                # last, partial batch; after a last full batch the Trainer stops by count and never runs it.
                torch.randperm(n, generator=rng)
            sizes.append([min(self.batch_size, n - b * self.batch_size) for b in range(self.n_batches)])
        index = index.view(count, self.n_batches, self.batch_size)
        weights = torch.zeros(count, self.n_batches, self.batch_size)
        for i, row in enumerate(sizes):
            for b, size in enumerate(row):
                weights[i, b, :size] = 1.0 / size
        return index.to(self.device), weights.to(self.device), sizes

    def _epoch_masks(self, sizes: list[list[int]]) -> torch.Tensor | None:
        """Every step's dropout masks for one epoch, (batches, layers, E, T, B, H), pre-scaled.

        Each member's masks come from its own generator in the order nn.Dropout draws them (step by step,
        layer by layer, in the RNN output's memory order); where uniform draws reproduce ``bernoulli_``
        exactly (checked once), a member's whole epoch is one draw.
        """
        if not any(self.dropout):
            return None
        order = _rnn_output_memory_order(self.cell)
        inverse = [order.index(d) for d in range(3)]
        fast = _uniform_draws_match_bernoulli()
        masks = torch.ones(self.n_batches, self.layers, len(self.members), self.steps, self.batch_size, self.hidden)
        for i, (member, p) in enumerate(zip(self.members, self.dropout)):
            if p <= 0:
                continue
            keep = 1 - p
            if not fast:
                for b, size in enumerate(sizes[i]):
                    for layer in range(self.layers):
                        noise = dropout_noise((size, self.steps, self.hidden), p, member.dropout_rng, self.cell)
                        masks[b, layer, i, :, :size] = noise.transpose(0, 1)
                continue
            total = self.layers * self.steps * self.hidden * sum(sizes[i])
            noise = (torch.rand(total, dtype=torch.float64, generator=member.dropout_rng) < keep).float().div_(keep)
            offset = 0
            for first, size, count in _runs(sizes[i]):  # consecutive batches of equal size: one copy each
                shape = (count, self.layers, size, self.steps, self.hidden)
                drawn = [count, self.layers] + [shape[2 + d] for d in order]
                block = noise[offset:offset + math.prod(shape)].view(drawn).permute(0, 1, *(2 + d for d in inverse))
                masks[first:first + count, :, i, :, :size] = block.transpose(2, 3)
                offset += math.prod(shape)
        return masks.to(self.device)

    def run(self) -> None:
        epoch = 0
        while self.members:
            train_loss = self._train_epoch()
            val_loss, val_accuracy = self._validate()
            finished = self._select_and_stop(epoch, train_loss, val_loss, val_accuracy)
            if finished:
                self._finish(finished, epoch)
            epoch += 1

    def _train_epoch(self) -> torch.Tensor:
        index, weights, sizes = self._epoch_batches()
        masks = self._epoch_masks(sizes)
        rows = torch.arange(len(self.members), device=self.device)[:, None]
        total = torch.zeros(len(self.members), device=self.device)
        for b in range(self.n_batches):
            batch = index[:, b]
            inputs = self.x_fit[rows, batch].transpose(1, 2).contiguous()  # (E, T, B, F)
            logits = self.forward(inputs, None if masks is None else masks[b])
            losses = self.member_losses(logits, self.y_fit[rows, batch]) * weights[:, b]
            self.optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            self.optimizer.step()
            counts = torch.tensor([row[b] for row in sizes], dtype=torch.float32, device=self.device)
            total += losses.detach().sum(dim=1) * counts
        return total / torch.tensor(self.n_fit, dtype=torch.float32, device=self.device)

    @torch.no_grad()
    def _validate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Validation loss and accuracy per member (members without a validation split get NaN)."""
        for member, n in zip(self.members, self.n_val):
            if n:  # iterating the validation DataLoader draws its base seed from the global stream
                torch.empty((), dtype=torch.int64).random_(generator=member.dropout_rng)
        logits = self.forward(self.x_val.transpose(1, 2).contiguous())
        loss = (self.member_losses(logits, self.y_val) * self.val_weight).sum(dim=1)
        if self.loss == REGRESSION_LOSS:  # no accuracy for a score: its validation loss is the MSE
            accuracy = torch.full_like(loss, math.nan)
        else:
            predicted = (logits[..., 0] >= 0).long() if self.loss == "bce" else logits.argmax(dim=-1)
            accuracy = ((predicted == self.y_val).float() * self.val_weight).sum(dim=1)
        has_val = torch.tensor([n > 0 for n in self.n_val], device=self.device)
        nan = torch.full_like(loss, math.nan)
        return torch.where(has_val, loss, nan).cpu(), torch.where(has_val, accuracy, nan).cpu()

    def _select_and_stop(self, epoch: int, train_loss: torch.Tensor, val_loss: torch.Tensor,
                         val_accuracy: torch.Tensor) -> list[int]:
        """Best weights (lowest validation loss so far) and early stopping, as BestWeights + EarlyStopping do."""
        has_val = torch.tensor([n > 0 for n in self.n_val])
        improved = has_val & (val_loss < self.best_loss)
        if improved.any():
            chosen = improved.to(self.device)
            for name, p in self.params.items():
                self.best[name][chosen] = p.detach()[chosen]
            self.best_loss = torch.where(improved, val_loss, self.best_loss)
            self.has_best |= improved
            for i in improved.nonzero().flatten().tolist():
                self.best_epoch[i] = epoch
        self.wait = torch.where(improved, torch.zeros_like(self.wait), self.wait + 1)
        finished = []
        train = train_loss.cpu().tolist()
        for i, member in enumerate(self.members):
            member.history.append({"epoch": epoch, "train/loss": train[i], "val/loss": float(val_loss[i]),
                                   "val/accuracy": float(val_accuracy[i])})
            stop = bool(has_val[i]) and (not math.isfinite(float(val_loss[i])) or int(self.wait[i]) >= self.patience[i])
            if stop or epoch + 1 >= self.max_epochs[i]:
                finished.append(i)
            elif self.progress is not None:
                self.progress(1.0 / self.max_epochs[i])
        return finished

    def _finish(self, finished: list[int], epoch: int) -> None:
        """Give finished members their weights (best epoch, else last) and drop them from the batch."""
        for i in finished:
            member = self.members[i]
            source = self.best if bool(self.has_best[i]) else {k: v.detach() for k, v in self.params.items()}
            member.estimator.set_fitted(self._state_dict(source, i, member.network), member.classes,
                                         self.best_epoch[i], epoch + 1, member.history)
            if self.progress is not None:
                self.progress(1.0 - epoch / self.max_epochs[i])
        keep = [i for i in range(len(self.members)) if i not in set(finished)]
        if not keep:
            self.members = []
            return
        index = torch.tensor(keep, device=self.device)
        cpu_index = index.cpu()
        state = {name: {k: (v[index] if v.dim() else v) for k, v in self.optimizer.state[p].items()}
                 for name, p in self.params.items()}
        self.params = {name: p.detach()[index].requires_grad_(True) for name, p in self.params.items()}
        self.best = {name: b[index] for name, b in self.best.items()}
        self.optimizer = self._optimizer(state)
        pick = lambda values: [values[i] for i in keep]  # noqa: E731
        self.members, self.dropout, self.patience, self.max_epochs = (
            pick(self.members), pick(self.dropout), pick(self.patience), pick(self.max_epochs))
        self.n_fit, self.n_val, self.best_epoch = pick(self.n_fit), pick(self.n_val), pick(self.best_epoch)
        self.residual = self.residual[index]
        self.x_fit, self.y_fit, self.x_val, self.y_val = (self.x_fit[index], self.y_fit[index],
                                                          self.x_val[index], self.y_val[index])
        self.val_weight = self.val_weight[index]
        self.has_best, self.best_loss, self.wait = self.has_best[cpu_index], self.best_loss[cpu_index], self.wait[cpu_index]

    def _state_dict(self, source: dict[str, torch.Tensor], i: int, network: ResidualRNNClassifier) -> dict:
        """Member ``i``'s weights under ResidualRNNClassifier's names and shapes (the padding removed)."""
        width = network.input_projection.in_features
        state = {
            "input_projection.weight": source["proj_w"][i, :width].T,
            "input_projection.bias": source["proj_b"][i, 0],
            "head.weight": source["head_w"][i].T,
            "head.bias": source["head_b"][i, 0],
        }
        for layer in range(self.layers):
            state[f"layers.{layer}.weight_ih_l0"] = source[f"w_ih{layer}"][i].T
            state[f"layers.{layer}.weight_hh_l0"] = source[f"w_hh{layer}"][i].T
            state[f"layers.{layer}.bias_ih_l0"] = source[f"b_ih{layer}"][i, 0]
            state[f"layers.{layer}.bias_hh_l0"] = source[f"b_hh{layer}"][i, 0]
        return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
