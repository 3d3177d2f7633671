"""The physics second opinion alone: its calls and blood-pool HU on phantoms and real CT.

    .venv/bin/python -m bench.eval_physics [--phantoms N] [--seed S] [--realct DIR]

Phantoms: N fresh series (both regions, every phase and the drawn confounders: calcified
vessel walls, intracranial calcium, low kV, PET/CT noise, weak boluses), 32 slices over
their region, 256 px, as the classifier samples them. Real CT: every series in
``../shared/realct`` with its label from that folder's README. Prints one line per series
and the accuracy; a blood pool that was not found counts as no opinion, not as an error.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ivcontrast.classifier.physics import BloodPool, PhysicsParams, assess
from ivcontrast.classifier.review import physics_says
from ivcontrast.classifier.sources import open_source
from ivcontrast.config import ClassifierSettings
from ivcontrast.synth import Phase, Region, SeriesSpec, SyntheticSeries

# Half of the phantoms without contrast, as in the training data.
PHASES = ("none", "arterial", "none", "portal_venous", "none", "delayed")
REALCT = Path(__file__).resolve().parents[2] / "shared" / "realct"
# Labels from ../shared/realct/README.md (blood-pool HU, tags, visual check).
REAL_LABELS = {
    "itkelastix_thorax_4dct_phase00/itkelastix00": False,
    "ts_upperabd_petct_dicom/example_ct_dicom": True,
    "ts_abdpelvis_native/example_ct.nii.gz": False,
    "dcmqact_ge_head": False,
    "pancreasctcb001_abd": True,
    "ctpa_0117_chest": True,
    "kits00072_arterial_partial": True,
    "acrinfltbreast013_petct_chest": False,
    "acrinfltbreast001_petct_t1": False,
    "acrinfltbreast001_petct_t2": False,
}


def line(name: str, truth: bool, pool: BloodPool, seconds: float) -> str:
    if not pool.found:
        call = "not found"
    else:
        call = "contrast" if pool.contrast else "no_contrast"
    ok = "" if not pool.found else ("ok" if pool.contrast == truth else "WRONG")
    hu = "" if pool.hu is None else f"{pool.hu:6.0f}"
    return (
        f"{name[:44]:44s} {'contrast' if truth else 'no_contrast':12s} {hu:>6s} HU "
        f"{call:12s} {ok:5s} {pool.structure or pool.reason[:60]} ({seconds:.1f} s)"
    )


def summarise(title: str, rows: list[tuple[bool, BloodPool]], margin_hu: float) -> None:
    found = [(t, p) for t, p in rows if p.found]
    right = sum(p.contrast == t for t, p in found)
    clear = [(t, says) for t, p in rows if (says := physics_says(p, margin_hu)) is not None]
    print(
        f"{title}: {len(rows)} series, blood pool found in {len(found)}, "
        f"right {right}/{len(found)} where found ({right}/{len(rows)} of all); "
        f"clear enough to send a disagreeing network call to review: {len(clear)}, "
        f"of them right {sum(t == says for t, says in clear)}"
    )


def phantoms(n: int, seed: int, params: PhysicsParams) -> list[tuple[bool, BloodPool]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            spec = SeriesSpec(
                region=Region.CHEST if i % 2 == 0 else Region.HEADNECK,
                phase=Phase(PHASES[(i // 2) % len(PHASES)]),
                seed=seed + i,
                matrix=256,
                slices=32,
            )
            series = SyntheticSeries(spec)
            folder = Path(tmp) / f"{i:03d}"
            series.write(folder)
            t0 = time.perf_counter()
            pool = assess(open_source(folder), params)
            plan = series.plan
            truth = Phase(plan.phase).contrast
            extra = f"{plan.region} {plan.phase} {plan.kvp} kV" + (" PET/CT" if plan.pet_ct else "")
            print(line(f"seed {seed + i} {extra}", truth, pool, time.perf_counter() - t0))
            rows.append((truth, pool))
    return rows


def real(folder: Path, params: PhysicsParams) -> list[tuple[bool, BloodPool]]:
    rows = []
    for name, truth in REAL_LABELS.items():
        t0 = time.perf_counter()
        pool = assess(open_source(folder / name), params)
        print(line(name, truth, pool, time.perf_counter() - t0))
        rows.append((truth, pool))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=40)
    parser.add_argument("--seed", type=int, default=9_300_000)
    parser.add_argument("--realct", type=Path, default=REALCT)
    args = parser.parse_args()
    params = PhysicsParams()
    print(f"threshold {params.threshold_hu:g} HU; slices sampled: 32 (phantoms), 48 (real)")
    results = []
    if args.phantoms:
        results.append(("phantoms", phantoms(args.phantoms, args.seed, params)))
    if args.realct.is_dir():
        results.append(("real CT", real(args.realct, params)))
    for title, rows in results:
        summarise(title, rows, ClassifierSettings().physics_margin_hu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
