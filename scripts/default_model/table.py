"""The real-CT table of the bundled model: leave-one-patient-out and shipped calls.

    python scripts/default_model/table.py WORK [--card CARD.json]

Reads ``runs/wo_<patient>/heldout.json`` (each fold's model on its held-out patient) and
``runs/all/real.json`` (the shipped model on the ten, which it was trained on), prints the
Markdown table and the counts, and with ``--card`` records both under
``metrics.real_ct_lopo`` and ``metrics.real_ct_seen`` of a package's card.json, and sets its
``regions`` to those the model is meant for.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

MARGIN = 0.15  # the margin the real-CT target asks for


def load(work: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    labels = {r["path"]: r for r in csv.DictReader((work / "realct.csv").open())}
    lopo: dict[str, tuple[dict[str, Any], float]] = {}
    for heldout in sorted(work.glob("runs/wo_*/heldout.json")):
        threshold = json.loads((heldout.parent / "model" / "card.json").read_text())["threshold"]
        for row in json.loads(heldout.read_text()):
            lopo[row["source"]] = (row, threshold)
    shipped_file = work / "runs" / "all" / "real.json"
    shipped = (
        {r["source"]: r for r in json.loads(shipped_file.read_text())}
        if shipped_file.is_file()
        else {}
    )
    rows = []
    for path, meta in labels.items():
        held, threshold = lopo.get(path, (None, None))
        seen = shipped.get(path)
        rows.append(
            {
                "series": path.split("/realct/")[-1],
                "truth": meta["label"],
                "patient": meta["patient_id"],
                "lopo": None
                if held is None
                else {
                    "probability": round(held["probability"], 4),
                    "threshold": round(threshold, 4),
                    "margin": round(held["probability"] - threshold, 4),
                    "blood_hu": held.get("blood_hu"),
                    "blood_pool": (held.get("physics") or {}).get("structure"),
                    "label": held["label"],
                    "reasons": held.get("review_reasons", []),
                },
                "shipped": None
                if seen is None
                else {
                    "probability": round(seen["probability"], 4),
                    "threshold": round(seen["threshold"], 4),
                    "blood_hu": seen.get("blood_hu"),
                    "label": seen["label"],
                },
            }
        )
    summary = {
        "lopo_right": sum(r["lopo"] is not None and r["lopo"]["label"] == r["truth"] for r in rows),
        "lopo_review": sum(r["lopo"] is not None and r["lopo"]["label"] == "review" for r in rows),
        "lopo_margin_met": sum(
            r["lopo"] is not None
            and (
                r["lopo"]["margin"] >= MARGIN
                if r["truth"] == "contrast"
                else r["lopo"]["margin"] <= -MARGIN
            )
            for r in rows
        ),
        "lopo_series": sum(r["lopo"] is not None for r in rows),
        "shipped_right": sum(
            r["shipped"] is not None and r["shipped"]["label"] == r["truth"] for r in rows
        ),
        "shipped_review": sum(
            r["shipped"] is not None and r["shipped"]["label"] == "review" for r in rows
        ),
        "series": len(rows),
    }
    return rows, summary


def _mark(label: str, truth: str) -> str:
    return label + (" ✓" if label == truth else "" if label == "review" else " ✗")


def markdown(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    lines = [
        "| series | truth | LOPO p | its threshold | margin | blood pool HU | LOPO call | shipped p | shipped call |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, sh = r["lopo"], r["shipped"]
        lines.append(
            f"| `{r['series']}` | {r['truth']} | "
            + (
                f"{lo['probability']:.3f} | {lo['threshold']:.3f} | {lo['margin']:+.3f} | {lo['blood_hu']} | {_mark(lo['label'], r['truth'])} | "
                if lo
                else "— | — | — | — | — | "
            )
            + (f"{sh['probability']:.3f} | {_mark(sh['label'], r['truth'])} |" if sh else "— | — |")
        )
    s = summary
    lines += [
        "",
        f"Leave one patient out: {s['lopo_right']}/{s['lopo_series']} right, {s['lopo_review']} in review, "
        f"{s['lopo_margin_met']}/{s['lopo_series']} at least {MARGIN} from the threshold on the right side. "
        f"Shipped model (trained on these): {s['shipped_right']}/{s['series']} right, {s['shipped_review']} in review.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("work", type=Path)
    parser.add_argument("--card", type=Path)
    parser.add_argument(
        "--regions",
        default="chest,headneck",
        help="the regions the model is meant for, recorded in the card (the training data "
        "also held a few abdomen and head-only series)",
    )
    args = parser.parse_args()
    rows, summary = load(args.work)
    print(markdown(rows, summary))
    if args.card:
        card = json.loads(args.card.read_text())
        card["regions"] = args.regions.split(",")
        # Which real series the shipped model saw, by name (the labels CSV it names holds
        # machine paths only).
        with (args.work / "train_all.csv").open() as fh:
            card["training_data"]["real_series"] = [
                {
                    "series": "/".join(Path(row["path"]).parts[-3:]).split("shared/")[-1],
                    "label": row["label"],
                    "patient": row["patient_id"],
                    "weight": float(row.get("weight") or 1),
                }
                for row in csv.DictReader(fh)
            ]
        card["metrics"]["real_ct_lopo"] = {
            "method": "one model per held-out patient (9 patients, 10 series), fine-tuned without "
            "that patient; its own validation threshold; the physics opinion and review as served",
            "summary": summary,
            "series": [{k: r[k] for k in ("series", "truth", "patient", "lopo")} for r in rows],
        }
        card["metrics"]["real_ct_seen"] = {
            "method": "the shipped model on the ten series it was trained on (not a validation)",
            "series": [{k: r[k] for k in ("series", "truth", "shipped")} for r in rows],
        }
        args.card.write_text(json.dumps(card, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
