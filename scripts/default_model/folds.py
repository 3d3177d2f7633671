"""Labels CSVs for the bundled model's training and its leave-one-patient-out check.

    python scripts/default_model/folds.py SHARED OUT

SHARED is the shared folder holding ``realct/`` and ``realct-train/``. Writes to OUT:
``train_all.csv`` (every real series, for the shipped model), and per patient P
``train_wo_P.csv`` (every real series but P's) and ``heldout_P.csv`` (P's series), plus
``realct.csv`` (the ten series with their labels) and ``patients.txt``. Real rows carry a
sampling weight: they are 11 series beside 200 phantoms. Labels are those of
``realct/README.md`` (blood-pool HU, tags and a visual check, set before any model saw them).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

# folder under realct/, label, patient, region
REAL = [
    ("itkelastix_thorax_4dct_phase00/itkelastix00", "no_contrast", "itkelastix", "chest"),
    ("ts_upperabd_petct_dicom/example_ct_dicom", "contrast", "ts_upperabd", "abdomen"),
    ("ts_abdpelvis_native/example_ct.nii.gz", "no_contrast", "ts_abdpelvis", "abdomen"),
    ("dcmqact_ge_head", "no_contrast", "ge_head", "head"),
    ("pancreasctcb001_abd", "contrast", "pancreas001", "abdomen"),
    ("ctpa_0117_chest", "contrast", "ctpa0117", "chest"),
    ("kits00072_arterial_partial", "contrast", "kits00072", "chest"),
    ("acrinfltbreast013_petct_chest", "no_contrast", "acrin013", "chest"),
    ("acrinfltbreast001_petct_t1", "no_contrast", "acrin001", "abdomen"),
    ("acrinfltbreast001_petct_t2", "no_contrast", "acrin001", "chest"),
]
# realct-train/: for training only, never reported
EXTRA = [("cptacgbm_c3n01192_head", "no_contrast", "cptac_c3n01192", "head")]
WEIGHT = 8  # real slices drawn 8x as often as a phantom's
# The hard cases first: if time runs out, they are the folds that matter most.
ORDER = [
    "ge_head",
    "acrin001",
    "acrin013",
    "itkelastix",
    "ts_abdpelvis",
    "ctpa0117",
    "kits00072",
    "pancreas001",
    "ts_upperabd",
]


def write(path: Path, rows: list[tuple[str, str, str, str]], weight: int | None) -> None:
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "patient_id", "region"] + (["weight"] if weight else []))
        for row in rows:
            out.writerow(list(row) + ([weight] if weight else []))


def main() -> int:
    shared, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    real = [(str(shared / "realct" / f), lab, p, r) for f, lab, p, r in REAL]
    extra = [(str(shared / "realct-train" / f), lab, p, r) for f, lab, p, r in EXTRA]
    assert sorted(ORDER) == sorted({r[2] for r in real})
    for patient in ORDER:
        write(out / f"train_wo_{patient}.csv", [r for r in real if r[2] != patient] + extra, WEIGHT)
        write(out / f"heldout_{patient}.csv", [r for r in real if r[2] == patient], None)
    write(out / "train_all.csv", real + extra, WEIGHT)
    write(out / "realct.csv", real, None)
    (out / "patients.txt").write_text("\n".join(ORDER) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
