"""Training data: labels CSVs and synth manifests, the patient split, the slice cache."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from ivcontrast.classifier.preprocess import PreprocessConfig, apply_windows, preprocess
from ivcontrast.classifier.sources import open_source
from ivcontrast.synth import SeriesSpec, series_plan, write_series
from ivcontrast.synth.manifest import write_manifest
from ivcontrast.training.cache import SliceCache, dequantise, fill, quantise
from ivcontrast.training.datasets import (
    DatasetError,
    LabelledSeries,
    parse_label,
    read_datasets,
    read_labels,
    summarise,
)
from ivcontrast.training.split import split_by_patient
from ivcontrast.training.synthetic import plan_set, sampled_spec

CONFIG = PreprocessConfig(size=32, num_slices=4)


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def series_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two small synthetic DICOM series, one with contrast."""
    root = tmp_path_factory.mktemp("series")
    for name, phase, seed in (("plain", "none", 11), ("enhanced", "arterial", 12)):
        spec = SeriesSpec(
            region="chest", phase=phase, seed=seed, matrix=64, slices=6, thickness=5.0, spacing=40.0
        )
        write_series(spec, root / name)
    return root


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", True),
        ("contrast", True),
        ("Yes", True),
        ("TRUE", True),
        ("0", False),
        ("no_contrast", False),
        ("non-contrast", False),
        ("no", False),
    ],
)
def test_parse_label(text: str, value: bool) -> None:
    assert parse_label(text) is value


def test_parse_label_refuses_unknown() -> None:
    with pytest.raises(ValueError, match="maybe"):
        parse_label("maybe")


def test_labels_csv_paths_are_relative_to_the_csv(tmp_path: Path) -> None:
    (tmp_path / "vols").mkdir()
    (tmp_path / "vols" / "a.nii.gz").write_bytes(b"")
    (tmp_path / "vols" / "b.nrrd").write_bytes(b"")
    labels = write_csv(
        tmp_path / "labels.csv",
        [
            {
                "path": "vols/a.nii.gz",
                "label": "contrast",
                "patient_id": "P1",
                "region": "chest",
                "phase": "arterial",
            },
            {
                "path": str(tmp_path / "vols" / "b.nrrd"),
                "label": "0",
                "patient_id": "P2",
                "region": "",
                "phase": "",
            },
        ],
    )
    items = read_labels(labels)
    assert [i.path for i in items] == [tmp_path / "vols" / "a.nii.gz", tmp_path / "vols" / "b.nrrd"]
    assert [i.contrast for i in items] == [True, False]
    assert items[0].region == "chest" and items[0].phase == "arterial"
    assert items[0].origin == f"{labels}:2"
    summary = summarise(items)
    assert summary["by_region"] == {
        "chest": {"contrast": 1, "no_contrast": 0},
        "unknown": {"contrast": 0, "no_contrast": 1},
    }
    assert summary["by_phase"] == {"arterial": 1, "none": 1}
    assert summary["patients"] == 2


def test_labels_csv_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "a.nii").write_bytes(b"")
    bad_label = write_csv(
        tmp_path / "l1.csv", [{"path": "a.nii", "label": "perhaps", "patient_id": "P"}]
    )
    with pytest.raises(DatasetError, match=r"l1.csv:2: label 'perhaps'"):
        read_labels(bad_label)
    missing = write_csv(
        tmp_path / "l2.csv", [{"path": "nope.nii", "label": "1", "patient_id": "P"}]
    )
    with pytest.raises(DatasetError, match=r"l2.csv:2: .*nope.nii does not exist"):
        read_labels(missing)
    no_patient = write_csv(tmp_path / "l3.csv", [{"path": "a.nii", "label": "1", "patient_id": ""}])
    with pytest.raises(DatasetError, match="empty patient_id"):
        read_labels(no_patient)
    columns = write_csv(tmp_path / "l4.csv", [{"file": "a.nii", "y": "1"}])
    with pytest.raises(DatasetError, match="expected the columns path, label, patient_id"):
        read_labels(columns)
    twice = write_csv(tmp_path / "l5.csv", [{"path": "a.nii", "label": "1", "patient_id": "P"}] * 2)
    with pytest.raises(DatasetError, match="already listed"):
        read_datasets([twice])


def test_synth_manifest_rows_are_found_next_to_the_manifest(tmp_path: Path) -> None:
    data = tmp_path / "moved"
    for name in ("0000_chest_none", "0001_headneck_arterial", "0002_chest_none"):
        (data / name).mkdir(parents=True)
    rows = [
        {
            "folder": "old/place/0000_chest_none",
            "contrast": 0,
            "patient_id": "SYN1",
            "region": "chest",
            "phase": "none",
            "kind": "axial",
            "sop_class": "ct",
        },
        {
            "folder": "old/place/0001_headneck_arterial",
            "contrast": 1,
            "patient_id": "SYN2",
            "region": "headneck",
            "phase": "arterial",
            "kind": "axial",
            "sop_class": "ct",
        },
        {
            "folder": "old/place/0002_chest_none",
            "contrast": 0,
            "patient_id": "SYN3",
            "region": "chest",
            "phase": "none",
            "kind": "localizer",
            "sop_class": "ct",
        },
    ]
    items = read_labels(write_manifest(data / "manifest.csv", rows))
    assert [i.path for i in items] == [data / "0000_chest_none", data / "0001_headneck_arterial"]
    assert [(i.contrast, i.region, i.phase, i.patient_id) for i in items] == [
        (False, "chest", "none", "SYN1"),
        (True, "headneck", "arterial", "SYN2"),
    ]


# --- split ---------------------------------------------------------------------------------


def make_items(n_patients: int, series_per_patient: int = 3) -> list[LabelledSeries]:
    items = []
    for p in range(n_patients):
        region = "chest" if p % 2 else "headneck"
        for s in range(series_per_patient):
            items.append(
                LabelledSeries(
                    Path(f"/d/{p}/{s}"),
                    contrast=s > 0 if p % 3 else s == 1,
                    patient_id=f"P{p:03d}",
                    region=region,
                )
            )
    return items


def test_split_keeps_every_patient_on_one_side() -> None:
    items = make_items(40)
    split = split_by_patient(items, 0.25, seed=7)
    train_patients = {items[i].patient_id for i in split.train}
    val_patients = {items[i].patient_id for i in split.val}
    assert train_patients.isdisjoint(val_patients)
    assert sorted(split.train + split.val) == list(range(len(items)))
    assert 8 <= len(val_patients) <= 12  # ~25% of 40 patients
    # Both sides hold both regions and both classes.
    for side in (split.train, split.val):
        assert {items[i].region for i in side} == {"chest", "headneck"}
        assert {items[i].contrast for i in side} == {True, False}


def test_split_is_deterministic_and_independent_of_order() -> None:
    items = make_items(30)
    a = split_by_patient(items, 0.2, seed=1)
    shuffled = list(reversed(items))
    b = split_by_patient(shuffled, 0.2, seed=1)
    assert {items[i].path for i in a.val} == {shuffled[i].path for i in b.val}
    c = split_by_patient(items, 0.2, seed=2)
    assert {items[i].patient_id for i in a.val} != {items[i].patient_id for i in c.val}


def test_split_refuses_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        split_by_patient(make_items(4), 1.0, seed=0)


# --- cache ---------------------------------------------------------------------------------


def test_hu_quantisation_is_within_a_sixteenth_of_a_hu() -> None:
    hu = np.array([-1024.0, -0.03, 40.06, 299.99, 3071.0, 9999.0], dtype=np.float32)
    back = dequantise(quantise(hu))
    assert np.all(np.abs(back[:5] - hu[:5]) <= 1 / 16)
    assert back[5] == pytest.approx(4095.875)  # beyond int16: clipped, far above every window


def test_cache_miss_then_hit_gives_the_serving_input(series_dir: Path, tmp_path: Path) -> None:
    cache = SliceCache(tmp_path / "cache", CONFIG)
    entry, hit = cache.get(series_dir / "enhanced")
    assert not hit
    again, hit = cache.get(series_dir / "enhanced")
    assert hit
    assert np.array_equal(again.hu, entry.hu)
    assert again.key == entry.key and again.source == entry.source
    assert again.has_header and again.contrast_bolus_agent == entry.contrast_bolus_agent
    served = preprocess(open_source(series_dir / "enhanced"), CONFIG)
    model_input = again.model_input(CONFIG.windows)
    np.testing.assert_allclose(model_input.x, served.x, atol=1 / 16 / 400 + 1e-6)
    np.testing.assert_array_equal(model_input.slice_indices, served.slice_indices)
    np.testing.assert_allclose(model_input.z_mm, served.z_mm)
    np.testing.assert_allclose(model_input.x, apply_windows(again.hu_float(), CONFIG.windows))


def test_cache_key_follows_config_and_files(series_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    folder.mkdir()
    for f in (series_dir / "plain").iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    cache = SliceCache(tmp_path / "cache", CONFIG)
    first, hit = cache.get(folder)
    assert not hit and cache.get(folder)[1]
    # Another preprocessing: another entry.
    other = SliceCache(tmp_path / "cache", PreprocessConfig(size=48, num_slices=4))
    entry, hit = other.get(folder)
    assert not hit and entry.hu.shape[1:] == (48, 48)
    # A touched file: a miss.
    some = sorted(folder.iterdir())[0]
    os.utime(some, ns=(some.stat().st_atime_ns, some.stat().st_mtime_ns + 10**9))
    assert not cache.get(folder)[1]
    # A removed file: a miss, and a different input (fewer slices).
    sorted(folder.iterdir())[-1].unlink()
    entry, hit = cache.get(folder)
    assert not hit and entry.source_slices == first.source_slices - 1


def test_corrupt_entry_is_rebuilt(series_dir: Path, tmp_path: Path) -> None:
    cache = SliceCache(tmp_path / "cache", CONFIG)
    entry, _ = cache.get(series_dir / "plain")
    cache.entry_path(entry.key).write_bytes(b"not a zip")
    rebuilt, hit = cache.get(series_dir / "plain")
    assert not hit and np.array_equal(rebuilt.hu, entry.hu)


def test_fill_reports_unreadable_series_and_keeps_going(series_dir: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.dcm").write_bytes(b"nothing")
    cache = SliceCache(tmp_path / "cache", CONFIG)
    outcomes = fill(cache, [series_dir / "plain", junk, series_dir / "enhanced"])
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert outcomes[0].key and outcomes[2].key and outcomes[1].key is None
    assert "no DICOM series" in (outcomes[1].error or "")
    assert [o.hit for o in fill(cache, [series_dir / "plain"])] == [True]


def test_in_memory_cache_keeps_nothing(series_dir: Path, tmp_path: Path) -> None:
    cache = SliceCache(None, CONFIG)
    entry, hit = cache.get(series_dir / "plain")
    assert not hit and not cache.get(series_dir / "plain")[1]
    assert entry.n_slices > 0


# --- synthetic training series ---------------------------------------------------------------


def test_plan_set_patients_phases_and_slabs() -> None:
    items = plan_set(60, 1000, 16, multiphase_fraction=0.4, slab_fraction=0.3)
    assert [i.spec["seed"] for i in items] == list(range(1000, 1060))
    assert plan_set(60, 1000, 16, multiphase_fraction=0.4, slab_fraction=0.3) == items
    by_patient: dict[str, list] = {}
    for item in items:
        by_patient.setdefault(item.patient_id, []).append(item)
        assert item.contrast == (item.phase != "none")
        assert item.spec["anatomy_seed"] == int(item.patient_id[3:])
    studies = [s for s in by_patient.values() if len(s) > 1]
    assert studies  # multi-phase studies share a patient: one anatomy, native first
    for study in studies:
        assert study[0].phase == "none" and all(s.contrast for s in study[1:])
        assert len({s.region for s in study}) == 1
    assert {i.region for i in items} == {"chest", "headneck"}
    slabs = [i for i in items if "slices" in i.spec]
    assert 8 <= len(slabs) <= 30 and all(i.spec["slices"] == 16 for i in slabs)
    assert all("slices" not in i.spec for i in plan_set(20, 5, 16))


def test_thinned_series_keep_the_drawn_coverage_and_thickness() -> None:
    spec = SeriesSpec(region="chest", phase="none", seed=42)
    dense = series_plan(spec)
    thin = series_plan(sampled_spec(spec, 12))
    assert thin.slices == 12 and dense.slices > 12
    assert (thin.slices - 1) * thin.spacing == pytest.approx((dense.slices - 1) * dense.spacing)
    assert thin.thickness == dense.thickness
    slab = SeriesSpec(region="chest", phase="none", seed=42, slices=12)
    assert sampled_spec(slab, 12) is slab  # a slab is left as it is


def test_a_labels_csv_may_weight_its_rows(tmp_path: Path) -> None:
    from ivcontrast.training.datasets import DatasetError, read_labels

    series = tmp_path / "a.nii.gz"
    series.write_bytes(b"x")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        f"path,label,patient_id,weight\n{series},contrast,p1,8\n{series.name},no,p2,\n"
    )
    assert [item.weight for item in read_labels(csv_path)] == [8.0, 1.0]
    csv_path.write_text(f"path,label,patient_id,weight\n{series},contrast,p1,-1\n")
    with pytest.raises(DatasetError, match="weight -1 not in"):
        read_labels(csv_path)


def test_weighted_slices_are_drawn_in_proportion() -> None:
    from ivcontrast.training.loop import Trainer

    weight = np.array([1.0] * 90 + [9.0] * 10)  # ten heavy slices carry half the weight
    trainer = Trainer.__new__(Trainer)
    trainer.config = type("C", (), {"seed": 0, "samples_per_epoch": 4000})()  # type: ignore[assignment]
    order = trainer._epoch_order(100, 1, weight)
    assert len(order) == 4000
    assert 0.45 < float(np.mean(order >= 90)) < 0.55
    uniform = trainer._epoch_order(100, 1)
    assert sorted(uniform[:100].tolist()) == list(range(100))
