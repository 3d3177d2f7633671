"""Inference speed on the CPU: networks alone, and one series from files to a prediction.

Prints, for MONAI EfficientNet B0-B4 at the default input size (random weights, batch 32):
slices/s in ONNX Runtime and in PyTorch eager, both on ``--threads`` threads. Then the time
from a 300-slice 512x512 DICOM series on disk to its prediction with the default
preprocessing and B0 in ONNX Runtime (median of ``--repeats``, with the load / preprocess /
inference split), against the FACTS.md anchor: EfficientNet-B4 at 256 px over all 300 slices
in ONNX Runtime, 17.3 slices/s, ~17 s. ``--anchor`` re-measures that anchor on this machine.

    .venv/bin/python bench/bench_inference.py            # all of it, ~5 minutes on 2 cores
    .venv/bin/python bench/bench_inference.py --archs efficientnet-b0 --no-series
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from ivcontrast.classifier.backends import OnnxBackend
from ivcontrast.classifier.engine import Classifier
from ivcontrast.classifier.networks import ARCHITECTURES, build_network, exportable
from ivcontrast.classifier.package import ModelCard, export_package
from ivcontrast.classifier.preprocess import PreprocessConfig

ANCHOR_SLICES_PER_S = 17.3  # FACTS.md: B4, 256 px, ONNX Runtime, 2 threads
ANCHOR_SERIES_S = 300 / ANCHOR_SLICES_PER_S


def slices_per_second(run, batch: np.ndarray, repeats: int) -> float:
    run(batch)  # warm-up: allocations, kernel choice
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - t0)
    return len(batch) / statistics.median(times)


def bench_network(
    arch: str, size: int, threads: int, batch: int, repeats: int, workdir: Path
) -> tuple[float, float]:
    import torch

    torch.set_num_threads(threads)
    config = PreprocessConfig(size=size)
    net = build_network(arch, config.channels).eval()
    card = ModelCard(name=f"bench-{arch}", version="0", architecture=arch, preprocess=config)
    package = export_package(net, card, workdir / f"{arch}-{size}", overwrite=True)
    x = np.random.default_rng(0).random((batch, config.channels, size, size), dtype=np.float32)
    onnx = slices_per_second(
        OnnxBackend(package.onnx_path, threads, batch).predict_logits, x, repeats
    )
    model = exportable(net)
    with torch.inference_mode():
        eager = slices_per_second(lambda a: model(torch.from_numpy(a)), x, max(1, repeats // 2))
    return onnx, eager


def phantom_slice(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A 512x512 trunk-like slice in HU: body, lungs, spine, aorta, table, noise."""
    rows, cols = np.mgrid[:512, :512].astype(np.float32)
    hu = np.full((512, 512), -1000.0, np.float32)
    width = 170 + 20 * np.sin(np.pi * k / n)
    hu[((rows - 250) / 120) ** 2 + ((cols - 256) / width) ** 2 <= 1] = 40.0
    for side in (-1, 1):
        hu[((rows - 230) / 80) ** 2 + ((cols - 256 - side * 85) / 60) ** 2 <= 1] = -850.0
    hu[(rows - 330) ** 2 + (cols - 256) ** 2 <= 22**2] = 700.0
    hu[(rows - 290) ** 2 + (cols - 280) ** 2 <= 13**2] = 180.0
    hu[(np.abs(rows - 395) <= 3) & (np.abs(cols - 256) <= 200)] = 250.0
    return hu + rng.normal(0, 12, hu.shape).astype(np.float32)


def write_series(folder: Path, n: int = 300) -> list[Path]:
    rng = np.random.default_rng(0)
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [-250.0, -250.0, -300.0 + 1.25 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.SliceThickness = 1.25
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = (np.round(phantom_slice(k, n, rng)) + 1024).astype(np.int16).tobytes()
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def bench_series(threads: int, repeats: int, workdir: Path) -> dict[str, float]:
    config = PreprocessConfig()
    card = ModelCard(
        name="bench-default", version="0", architecture="efficientnet-b0", preprocess=config
    )
    package = export_package(
        build_network("efficientnet-b0", config.channels), card, workdir / "default", overwrite=True
    )
    folder = workdir / "series"
    folder.mkdir()
    t0 = time.perf_counter()
    paths = write_series(folder)
    print(
        f"  wrote 300 slices ({sum(p.stat().st_size for p in paths) / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
    )
    classifier = Classifier(package, OnnxBackend(package.onnx_path, threads))
    classifier.classify_series(paths)  # the worker has the model loaded and warm
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prediction = classifier.classify_series(paths)
        runs.append((time.perf_counter() - t0, prediction.timings))
    wall = [r[0] for r in runs]
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "load_s": statistics.median(r[1].load_s for r in runs),
        "preprocess_s": statistics.median(r[1].preprocess_s for r in runs),
        "inference_s": statistics.median(r[1].inference_s for r in runs),
        "slices_used": prediction.slices_used,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", default=",".join(ARCHITECTURES), help="comma-separated")
    parser.add_argument("--size", type=int, default=PreprocessConfig().size)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--anchor", action="store_true", help="also measure B4 at 256 px (the FACTS.md anchor)"
    )
    parser.add_argument(
        "--no-series", action="store_true", help="skip the 300-slice end-to-end run"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ivc-bench-") as tmp:
        workdir = Path(tmp)
        runs = [(arch, args.size) for arch in args.archs.split(",") if arch]
        if args.anchor:
            runs.append(("efficientnet-b4", 256))
        print(f"networks, random weights, batch {args.batch}, {args.threads} threads (slices/s):")
        print(
            f"  {'architecture':<16} {'px':>4} {'onnxruntime':>12} {'torch eager':>12} {'ratio':>6}"
        )
        for arch, size in runs:
            onnx, eager = bench_network(arch, size, args.threads, args.batch, args.repeats, workdir)
            note = (
                f"   anchor {ANCHOR_SLICES_PER_S} -> x{onnx / ANCHOR_SLICES_PER_S:.2f}"
                if (arch, size) == ("efficientnet-b4", 256)
                else ""
            )
            print(
                f"  {arch:<16} {size:>4} {onnx:>12.1f} {eager:>12.1f} {onnx / eager:>6.1f}{note}",
                flush=True,
            )
        if not args.no_series:
            print(
                f"300-slice 512x512 series, files -> prediction, default config, B0, ONNX Runtime, {args.threads} threads:"
            )
            result = bench_series(args.threads, args.repeats, workdir)
            print(
                f"  median {result['median_s']:.2f} s (min {result['min_s']:.2f}, max {result['max_s']:.2f}) over {args.repeats} runs, "
                f"{result['slices_used']} slices: load {result['load_s']:.2f} s, preprocess {result['preprocess_s']:.2f} s, "
                f"inference {result['inference_s']:.2f} s"
            )
            print(
                f"  anchor: B4 over all 300 slices ~{ANCHOR_SERIES_S:.1f} s -> {ANCHOR_SERIES_S / result['median_s']:.1f}x faster; "
                f"target <= 3 s: {'met' if result['median_s'] <= 3.0 else 'NOT met'}"
            )
    print(f"(pydicom {pydicom.__version__})")


if __name__ == "__main__":
    main()
