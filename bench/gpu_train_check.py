"""Training throughput on one CUDA GPU (H100/H200 class): one script, well under 10 minutes.

Run from the repository root on the GPU machine (needs torch with CUDA, monai, and the
project's dependencies; ``src/`` is put on the path)::

    python bench/gpu_train_check.py                       # prints figures
    python bench/gpu_train_check.py --json "$OUT/gpu_train.json"

What it measures, for the configuration of the bundled default model (its card, when present;
else EfficientNet-B0 at 128 px, batch 32):

1. ``--series`` phantom series generated, written as DICOM, read back and preprocessed into a
   temporary slice cache by ``--workers`` processes (the CPU side of a training run);
2. ``Trainer.fit`` on CUDA (bf16 autocast, channels-last, the slice set resident on the GPU,
   augmentation on the GPU): training slices/s at the default batch and at ``--big-batch``,
   from the second epoch (the first holds cuDNN's autotuning), and the validation pass
   (inference) slices/s;
3. the bare network step on random tensors at the same batch sizes, and the ratio of the
   pipeline to it (how well the loop keeps the GPU busy).

Nothing is downloaded; everything is written under a temporary folder and removed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from ivcontrast.classifier.aggregate import Aggregation  # noqa: E402
from ivcontrast.classifier.preprocess import PreprocessConfig  # noqa: E402
from ivcontrast.training.cache import SliceCache  # noqa: E402
from ivcontrast.training.loop import TrainConfig, Trainer  # noqa: E402
from ivcontrast.training.slices import SliceSet  # noqa: E402
from ivcontrast.training.synthetic import fill_synthetic, item_key, plan_set  # noqa: E402

DEFAULT_CARD = ROOT / "src" / "ivcontrast" / "models" / "default" / "card.json"


def default_configuration() -> tuple[PreprocessConfig, str, int, str]:
    """(preprocessing, architecture, batch size, where they came from)."""
    if DEFAULT_CARD.is_file():
        card = json.loads(DEFAULT_CARD.read_text())
        train = card.get("training_data", {}).get("train_config", {})
        return (
            PreprocessConfig.from_dict(card["preprocess"]),
            card["architecture"],
            int(train.get("batch_size", 32)),
            str(DEFAULT_CARD.relative_to(ROOT)),
        )
    return PreprocessConfig(size=128, num_slices=32), "efficientnet-b0", 32, "built-in defaults"


def bare_step_rate(
    arch: str, channels: int, size: int, batch: int, steps: int, device: str
) -> float:
    """Slices/s of forward + backward + AdamW on random tensors (bf16, channels-last on CUDA)."""
    import torch

    from ivcontrast.classifier.networks import build_network

    cuda = device == "cuda"
    net = build_network(arch, channels).to(device).train()
    x = torch.rand(batch, channels, size, size, device=device)
    if cuda:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    y = torch.randint(0, 2, (batch,), device=device).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = loss_fn(net(x).float().reshape(-1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for _ in range(min(10, steps)):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=96, help="phantom series to generate")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--steps", type=int, default=150, help="training steps per epoch")
    parser.add_argument("--big-batch", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke test of this script"
    )
    args = parser.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU visible to torch", file=sys.stderr)
        return 2
    config, arch, batch, origin = default_configuration()
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    figures: dict[str, object] = {
        "gpu": gpu,
        "torch": torch.__version__,
        "configuration": {
            "from": origin,
            "architecture": arch,
            "size": config.size,
            "slices": config.num_slices,
            "batch": batch,
        },
    }
    print(f"{gpu}, torch {torch.__version__}; {arch} {config.size} px, batch {batch} ({origin})")
    with tempfile.TemporaryDirectory(prefix="gpu-train-") as tmp:
        cache = SliceCache(Path(tmp) / "cache", config)
        items = plan_set(args.series, 8_000_000, config.num_slices or 32)
        t0 = time.perf_counter()
        outcomes = fill_synthetic(cache, items, args.workers)
        gen_s = time.perf_counter() - t0
        ok = [i for i, o in enumerate(outcomes) if o.key is not None]
        print(
            f"phantoms -> cache: {len(ok)}/{len(items)} series in {gen_s:.1f} s "
            f"({len(ok) / gen_s:.2f} series/s, {args.workers} workers)"
        )
        figures["phantoms_per_s"] = len(ok) / gen_s
        entries = [cache.load(item_key(cache, items[i])) for i in ok]
        labels = [items[i].label for i in ok]
        data = SliceSet.build(entries, labels)  # type: ignore[arg-type]
        val = SliceSet.build(entries[: len(ok) // 4], labels[: len(ok) // 4])  # type: ignore[arg-type]
        for label, size in (("default", batch), ("big", args.big_batch)):
            cfg = TrainConfig(
                arch=arch,
                epochs=2,
                batch_size=size,
                samples_per_epoch=size * args.steps,
                device=args.device,
                eval_batch_size=512,
            )
            trainer = Trainer(cfg, config.windows, Path(tmp) / label, Aggregation(), progress=False)
            history = trainer.fit(data, val).history
            train_rate = float(history[-1]["train_slices_per_s"])
            eval_rate = len(val) / float(history[-1]["val_seconds"])
            bare = bare_step_rate(arch, config.channels, config.size, size, args.steps, args.device)
            figures[f"batch_{size}"] = {
                "train_slices_per_s": train_rate,
                "bare_step_slices_per_s": bare,
                "pipeline_vs_bare": train_rate / bare,
                "eval_slices_per_s": eval_rate,
            }
            print(
                f"batch {size}: train {train_rate:,.0f} slices/s (bare network step "
                f"{bare:,.0f}, ratio {train_rate / bare:.2f}); validation pass {eval_rate:,.0f} slices/s"
            )
            del trainer
            if args.device == "cuda":
                torch.cuda.empty_cache()
    per_epoch = sum(e.n_slices for e in entries)  # type: ignore[union-attr]
    rate = figures[f"batch_{batch}"]["train_slices_per_s"]  # type: ignore[index]
    print(f"an epoch over these {per_epoch} slices at the default batch: {per_epoch / rate:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
