"""The train loop: augmentation on the device, early stopping, checkpoints.

The slices it trains on are held in memory by ``ivcontrast.training.slices``.

A run directory holds::

    last.pt              after every epoch: model, optimiser, schedule, history, counters
    best.pt              the model of the epoch with the lowest validation loss, and its card
    history.json, .csv   one row per epoch: losses, AUCs, learning rate, time, slices/s
    val_predictions.npz  the best epoch's validation slice probabilities

Checkpoints hold tensors, numbers, strings and lists only, and are read back with
``torch.load(weights_only=True)``, which refuses anything else (no pickled objects).

Epoch ``e`` seeds its shuffling, augmentation and dropout from (seed, e), so a run resumed
from ``last.pt`` continues as the uninterrupted run would have. The learning rate warms up
linearly, then follows a cosine to 2% of ``lr`` at the last planned epoch. The loss is binary
cross-entropy on slices with the scan's label, positives weighted by negatives / positives.
Validation loss is the unweighted mean; early stopping watches it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.training.augment import AugmentConfig, augment, window
from ivcontrast.training.metrics import roc_auc
from ivcontrast.training.slices import Predictions, SliceBatches, SliceSet
from ivcontrast.vocabulary import DEVICES

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
LAST = "last.pt"
BEST = "best.pt"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
VAL_PREDICTIONS = "val_predictions.npz"
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "efficientnet-b0"
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 5
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast and channels-last on CUDA; ignored on the CPU
    dropout: float = 0.2
    samples_per_epoch: int = 0  # slices drawn per epoch; 0 = every training slice once
    warmup_fraction: float = 0.05
    freeze_backbone: bool = False  # train the head only
    freeze_blocks: int = 0  # freeze the stem and the first N of the 7 block stages
    threads: int = 0  # CPU threads for torch; 0 = torch's default
    eval_batch_size: int = 64
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "weight_decay": self.weight_decay >= 0,
            "patience": self.patience >= 1,
            "device": self.device in DEVICES,
            "dropout": 0 <= self.dropout < 1,
            "samples_per_epoch": self.samples_per_epoch >= 0,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "freeze_blocks": 0 <= self.freeze_blocks <= 7,
            "threads": self.threads >= 0,
            "eval_batch_size": self.eval_batch_size >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                "invalid training config: " + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad)
            )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["augment"] = self.augment.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["augment"] = AugmentConfig(**data.get("augment", {}))
        return cls(**data)


@dataclass(frozen=True)
class TrainResult:
    best_epoch: int
    best_val_loss: float
    epochs_run: int
    stopped_early: bool
    history: list[dict[str, Any]]
    run_dir: Path


@dataclass(frozen=True)
class _EpochTraining:
    """What an epoch of training measured: mean loss, slices seen, wall and CPU seconds."""

    loss: float
    seen: int
    seconds: float
    cpu_seconds: float


def choose_device(device: str) -> str:
    """'cuda' or 'cpu' for a requested 'auto' | 'cpu' | 'cuda'."""
    from ivcontrast.classifier.backends import cuda_available

    if device == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if device == "cuda":
        raise RuntimeError("device 'cuda': PyTorch sees no CUDA GPU")
    return "cpu"


def freeze(net: nn.Module, backbone: bool, blocks: int) -> list[nn.Module]:
    """Stop gradients to the backbone (all but the head) or to the stem and the first
    ``blocks`` block stages; returns the frozen modules, whose batch norms must stay in eval."""
    frozen: list[Any] = []
    children: dict[str, Any] = dict(net.named_children())
    if backbone:
        frozen = [m for name, m in children.items() if name not in ("_fc", "_dropout")]
    elif blocks > 0:
        frozen = [children["_conv_stem"], children["_bn0"], *list(children["_blocks"])[:blocks]]
    for module in frozen:
        for param in module.parameters():
            param.requires_grad_(False)
    return frozen


class Trainer:
    """One training run in ``run_dir``: fresh, resumed, or fine-tuning a given network."""

    def __init__(
        self,
        config: TrainConfig,
        windows: tuple[tuple[float, float], ...],
        run_dir: Path,
        aggregation: Aggregation,
        network: nn.Module | None = None,
        progress: bool = True,
    ) -> None:
        import torch

        from ivcontrast.classifier.networks import build_network

        self.config = config
        self.windows = windows
        self.run_dir = Path(run_dir)
        self.aggregation = aggregation
        self.progress = progress
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(choose_device(config.device))
        self.amp = config.amp and self.device.type == "cuda"
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input shapes: pick kernels once
        torch.manual_seed(config.seed)
        if network is None:
            network = build_network(config.arch, len(windows), config.dropout)
            # MONAI starts the head at +-1 per feature (logits in the hundreds): start near 0.
            head: Any = network.get_submodule("_fc")
            torch.nn.init.normal_(head.weight, 0.0, 0.01)
            torch.nn.init.zeros_(head.bias)
        # MONAI keeps TF's batch-norm momentum (0.01): running statistics would lag far
        # behind the weights over the few thousand steps of a CPU run.
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = BN_MOMENTUM
        # Packages hold the exportable swish; the memory-efficient one trains lighter.
        network.set_swish(memory_efficient=True)  # type: ignore[operator]
        self.net = network.to(self.device)
        if self.amp:
            self.net = self.net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.frozen = freeze(self.net, config.freeze_backbone, config.freeze_blocks)
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params:
            raise ValueError("every parameter is frozen: nothing to train")
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0
        self.best_val_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.stopped_early = False
        self.scheduler: Any = None
        self._resume_scheduler: dict[str, Any] | None = None

    # --- schedule ---------------------------------------------------------------------------

    def _make_scheduler(self, steps_per_epoch: int) -> None:
        import torch

        total = max(1, self.config.epochs * steps_per_epoch)
        warmup = int(self.config.warmup_fraction * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            t = min(1.0, (step - warmup) / max(1, total - warmup))
            return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * t))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    # --- checkpoints --------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "epoch": self.epoch,
            "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "stopped_early": self.stopped_early,
            "history_json": json.dumps(self.history),
            "config_json": json.dumps(self.config.to_dict()),
        }

    def resume(self, path: Path | None = None) -> None:
        """Continue from ``last.pt`` (the run's own, by default)."""
        import torch

        state = torch.load(path or self.run_dir / LAST, map_location="cpu", weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{path or self.run_dir / LAST}: checkpoint format {state.get('format')!r}"
            )
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self._resume_scheduler = state["scheduler"]
        self.epoch = int(state["epoch"])
        self.best_val_loss = float(state["best_val_loss"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
        self.stopped_early = bool(state["stopped_early"])
        self.history = json.loads(state["history_json"])
        log.info("resuming %s after epoch %d (best %d)", self.run_dir, self.epoch, self.best_epoch)

    def _save(self, name: str, payload: dict[str, Any]) -> None:
        import torch

        path = self.run_dir / name
        tmp = path.with_name(f".{name}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)

    def _write_history(self) -> None:
        (self.run_dir / HISTORY_JSON).write_text(json.dumps(self.history, indent=1) + "\n")
        if self.history:
            with (self.run_dir / HISTORY_CSV).open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(self.history[0]))
                writer.writeheader()
                writer.writerows(self.history)

    # --- epochs -------------------------------------------------------------------------------

    def _train_mode(self) -> None:
        self.net.train()
        for module in self.frozen:
            module.eval()

    def _epoch_order(self, n: int, epoch: int, weight: np.ndarray | None = None) -> np.ndarray:
        """The slices of one epoch: every slice once per pass, or drawn by ``weight``."""
        rng = np.random.default_rng([self.config.seed, epoch, 0x0E])
        wanted = self.config.samples_per_epoch or n
        if weight is not None:
            return rng.choice(n, size=wanted, replace=True, p=weight / weight.sum())
        parts = [rng.permutation(n) for _ in range(math.ceil(wanted / n))]
        return np.concatenate(parts)[:wanted]

    def predict(self, data: SliceSet, batches: SliceBatches | None = None) -> Predictions:
        """Slice probabilities of ``data`` with the current weights (eval mode)."""
        import torch

        batches = batches or SliceBatches(data, self.device)
        self.net.eval()
        out = []
        with (
            torch.inference_mode(),
            torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp),
        ):
            for start in range(0, len(data), self.config.eval_batch_size):
                idx = np.arange(start, min(len(data), start + self.config.eval_batch_size))
                hu, _ = batches.get(idx)
                x = window(hu, self.windows)
                if self.amp:
                    x = x.contiguous(memory_format=torch.channels_last)
                out.append(torch.sigmoid(self.net(x).float()).reshape(-1).cpu())
        p = torch.cat(out).numpy().astype(np.float64)
        return Predictions(p, data.y.copy(), data.series.copy(), data.n_series)

    def fit(
        self,
        train: SliceSet,
        val: SliceSet,
        on_best: Callable[[int, Predictions], dict[str, Any]] | None = None,
    ) -> TrainResult:
        """Train until ``epochs`` or early stopping; ``on_best(epoch, val_predictions)`` returns
        what ``best.pt`` stores beside the weights (the card)."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if len(train) == 0 or len(val) == 0:
            raise ValueError("training needs slices on both sides of the split")
        batches = SliceBatches(train, self.device)
        val_batches = SliceBatches(val, self.device)
        steps = math.ceil((cfg.samples_per_epoch or len(train)) / cfg.batch_size)
        self._start_schedule(steps)
        criterion = self._criterion(train)
        log.info(
            "training %s on %s: %d slices of %d series (validation %d of %d), %d epochs x %d steps",
            cfg.arch,
            self.device,
            len(train),
            train.n_series,
            len(val),
            val.n_series,
            cfg.epochs,
            steps,
        )
        while self.epoch < cfg.epochs and not self.stopped_early:
            epoch = self.epoch + 1
            trained = self._train_epoch(epoch, batches, steps, criterion)
            predictions, row = self._validate(epoch, val, val_batches, trained)
            self._end_epoch(row, predictions, on_best)
        self._write_history()
        return TrainResult(
            best_epoch=self.best_epoch,
            best_val_loss=self.best_val_loss,
            epochs_run=self.epoch,
            stopped_early=self.stopped_early,
            history=self.history,
            run_dir=self.run_dir,
        )

    def _start_schedule(self, steps_per_epoch: int) -> None:
        """A new schedule, or the resumed one at its saved step and learning rate."""
        self._make_scheduler(steps_per_epoch)
        if self._resume_scheduler is not None:
            self.scheduler.load_state_dict(self._resume_scheduler)
            # A new scheduler has just set the warm-up rate; the next step needs the saved one.
            for group, lr in zip(
                self.optimizer.param_groups, self.scheduler.get_last_lr(), strict=True
            ):
                group["lr"] = lr

    def _criterion(self, train: SliceSet) -> nn.Module:
        """Slice BCE on logits, positives weighted by negatives / positives."""
        import torch

        positives = float(train.y.sum())
        pos_weight = torch.tensor(
            (len(train) - positives) / max(positives, 1.0), device=self.device
        )
        return torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def _train_epoch(
        self, epoch: int, batches: SliceBatches, steps: int, criterion: nn.Module
    ) -> _EpochTraining:
        """One epoch of ``steps`` optimiser steps, its order and augmentation seeded by epoch."""
        import torch
        from tqdm import tqdm

        cfg = self.config
        torch.manual_seed(cfg.seed * 1000 + epoch)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(cfg.seed * 1000 + epoch)
        order = self._epoch_order(len(batches.data), epoch, batches.data.weight)
        self._train_mode()
        t0, c0 = time.perf_counter(), time.process_time()
        # The loss is summed on the device: reading it every step would stall a GPU.
        total_loss = torch.zeros((), device=self.device)
        seen = 0
        bar = tqdm(
            range(steps),
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="batch",
            file=sys.stderr,
            disable=None if self.progress else True,
            leave=False,
        )
        for step in bar:
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            total_loss += self._step(batches, idx, generator, criterion) * len(idx)
            seen += len(idx)
            if step % 20 == 19 or step == steps - 1:
                bar.set_postfix(loss=f"{float(total_loss) / seen:.4f}")
        bar.close()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return _EpochTraining(
            loss=float(total_loss) / max(seen, 1),
            seen=seen,
            seconds=time.perf_counter() - t0,
            cpu_seconds=time.process_time() - c0,
        )

    def _step(
        self,
        batches: SliceBatches,
        idx: np.ndarray,
        generator: torch.Generator,
        criterion: nn.Module,
    ) -> torch.Tensor:
        """One optimiser and schedule step on the slices ``idx``; the batch's loss (detached)."""
        import torch

        hu, y = batches.get(idx)
        x = window(augment(hu, self.config.augment, generator), self.windows)
        if self.amp:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net(x).float().reshape(-1)
        loss = criterion(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def _validate(
        self, epoch: int, val: SliceSet, val_batches: SliceBatches, trained: _EpochTraining
    ) -> tuple[Predictions, dict[str, Any]]:
        """Validation predictions and the epoch's history row (without ``best``)."""
        t0 = time.perf_counter()
        predictions = self.predict(val, val_batches)
        scan_p = predictions.scan_probabilities(self.aggregation)
        row = {
            "epoch": epoch,
            "train_loss": trained.loss,
            "val_loss": _bce(predictions.slice_p, predictions.slice_y),
            "val_slice_auc": roc_auc(predictions.slice_y, predictions.slice_p),
            "val_scan_auc": roc_auc(predictions.scan_labels(), scan_p),
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_seconds": round(trained.seconds, 2),
            "train_cpu_seconds": round(trained.cpu_seconds, 2),
            "val_seconds": round(time.perf_counter() - t0, 2),
            "train_slices_per_s": (
                round(trained.seen / trained.seconds, 2) if trained.seconds > 0 else None
            ),
        }
        return predictions, row

    def _end_epoch(
        self,
        row: dict[str, Any],
        predictions: Predictions,
        on_best: Callable[[int, Predictions], dict[str, Any]] | None,
    ) -> None:
        """Keep a better epoch as best, or count it towards early stopping; then save
        ``last.pt`` and the history."""
        epoch = self.epoch = row["epoch"]
        improved = row["val_loss"] < self.best_val_loss
        if improved:
            self.best_val_loss, self.best_epoch, self.bad_epochs = row["val_loss"], epoch, 0
            self._save_best(epoch, predictions, on_best)
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.config.patience:
                self.stopped_early = True
        row["best"] = improved
        self.history.append(row)
        self._save(LAST, self._state())
        self._write_history()
        log.info(
            "epoch %d: train loss %.4f, val loss %.4f, val AUC slice %.4f scan %.4f, "
            "%.1f slices/s%s%s",
            epoch,
            row["train_loss"],
            row["val_loss"],
            row["val_slice_auc"],
            row["val_scan_auc"],
            row["train_slices_per_s"] or 0.0,
            " (best)" if improved else "",
            " - stopping early" if self.stopped_early else "",
        )

    def _save_best(
        self,
        epoch: int,
        predictions: Predictions,
        on_best: Callable[[int, Predictions], dict[str, Any]] | None,
    ) -> None:
        """``best.pt`` (weights and what ``on_best`` adds) and its validation predictions."""
        predictions.save(self.run_dir / VAL_PREDICTIONS)
        extra = on_best(epoch, predictions) if on_best else {}
        self._save(
            BEST,
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch,
                "model": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                **extra,
            },
        )


def _bce(p: np.ndarray, y: np.ndarray) -> float:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def load_best(run_dir_or_file: Path) -> dict[str, Any]:
    """The best checkpoint's payload (``best.pt`` in a run directory, or the file itself)."""
    import torch

    path = Path(run_dir_or_file)
    if path.is_dir():
        path = path / BEST
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not an ivcontrast checkpoint")
    return state
