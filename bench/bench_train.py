"""Training costs on this machine: phantoms into the cache, cache reads, train and eval steps.

Prints, for the default model's configuration (EfficientNet-B0 at ``--size`` px, ``--slices``
slices per series, batch ``--batch``):

1. phantom series generated, written as DICOM, read back, preprocessed and cached: wall and CPU
   seconds per series (``--series`` series, ``--workers`` processes, full-size 256/512 matrices);
2. the same series read back from the cache (hits): milliseconds per series;
3. training through ``Trainer.fit`` (augmentation, forward, backward, AdamW) on ``--threads``
   1 and 2: slices/s and CPU seconds per slice, and the validation pass (inference) slices/s;
4. what that means for a run: how many training slices one generated series costs, and the
   ratio of inference to training speed.

    .venv/bin/python bench/bench_train.py                     # ~4 minutes on 2 idle cores
    .venv/bin/python bench/bench_train.py --series 4 --steps 4 --size 96
"""

from __future__ import annotations

import os

# Before torch loads: OpenMP waiters that spin steal the CPU on a shared machine (see train.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import resource
import tempfile
import time
from pathlib import Path

from ivcontrast.classifier.aggregate import Aggregation
from ivcontrast.classifier.preprocess import PreprocessConfig
from ivcontrast.training.cache import SliceCache
from ivcontrast.training.loop import TrainConfig, Trainer
from ivcontrast.training.slices import SliceSet
from ivcontrast.training.synthetic import fill_synthetic, item_key, plan_set


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="training steps per measurement")
    parser.add_argument("--arch", default="efficientnet-b0")
    args = parser.parse_args()

    config = PreprocessConfig(size=args.size, num_slices=args.slices)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        cache = SliceCache(Path(tmp) / "cache", config)
        items = plan_set(args.series, 7_000_000, args.slices)
        t0, c0 = time.perf_counter(), cpu_seconds()
        outcomes = fill_synthetic(cache, items, args.workers)
        gen_s, gen_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        failed = [o.error for o in outcomes if o.key is None]
        rows = [o.row or {} for o in outcomes]
        matrices = sorted({int(r.get("matrix", 0)) for r in rows})
        print(
            f"phantoms -> cache: {args.series} series x {args.slices} slices (matrix {matrices}), "
            f"{args.workers} workers: {gen_s / args.series:.2f} s/series wall, "
            f"{gen_cpu / args.series:.2f} CPU s/series; failed {len(failed)}"
        )
        t0 = time.perf_counter()
        entries = [cache.load(item_key(cache, item)) for item in items]
        load_ms = (time.perf_counter() - t0) / len(items) * 1000
        print(f"cache hits: {load_ms:.1f} ms/series")
        labels = [item.label for item in items]
        data = SliceSet.build(entries, labels)  # type: ignore[arg-type]
        half = max(1, len(items) // 2)
        val = SliceSet.build(entries[:half], labels[:half])  # type: ignore[arg-type]
        results = {}
        for threads in (1, 2):
            train_cfg = TrainConfig(
                arch=args.arch,
                epochs=1,
                batch_size=args.batch,
                samples_per_epoch=args.batch * args.steps,
                threads=threads,
                device="cpu",
            )
            trainer = Trainer(
                train_cfg,
                config.windows,
                Path(tmp) / f"run{threads}",
                Aggregation(),
                progress=False,
            )
            c0 = time.process_time()
            result = trainer.fit(data, val)
            cpu = time.process_time() - c0
            row = result.history[-1]
            train_rate = float(row["train_slices_per_s"])
            eval_rate = len(val) / float(row["val_seconds"])
            cpu_per_slice = float(row["train_cpu_seconds"]) / (args.batch * args.steps)
            results[threads] = (train_rate, eval_rate)
            print(
                f"{args.arch} {args.size} px, batch {args.batch}, {threads} thread(s): "
                f"train {train_rate:.1f} slices/s ({cpu_per_slice * 1000:.0f} CPU ms/slice), "
                f"eval {eval_rate:.1f} slices/s; whole fit {cpu:.0f} CPU s"
            )
        train2, eval2 = results[2]
        gen_in_slices = gen_cpu / args.series / (1.0 / train2)
        print(
            f"one generated series costs the CPU time of ~{gen_in_slices:.0f} training slices "
            f"(2 threads); eval/train speed ratio {eval2 / train2:.1f}; "
            f"2 threads vs 1: {train2 / results[1][0]:.2f}x"
        )


if __name__ == "__main__":
    main()
