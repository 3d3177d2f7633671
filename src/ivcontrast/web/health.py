"""``/health``: can this node receive, queue and classify right now?

Four checks, each ``ok``, ``warn`` or ``fail``; any ``fail`` makes the answer 503.

- database: a query answers.
- spool: free space at least ``scp.min_free_mb`` (below it the listener refuses C-STORE).
- workers: some worker's heartbeat in the workers table is newer than
  ``web.worker_stale_seconds`` (read from the store, so it covers workers on other hosts).
- model: the model package is there with a valid card (fail if not); a live worker that
  takes classify jobs has it loaded (warn if none does).

The details (spool path, disk sizes, worker host:pid, model path) describe the host: a
request without the token, where one is set, gets only :func:`public_summary`.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ivcontrast import __version__
from ivcontrast.classifier.errors import PackageError
from ivcontrast.classifier.package import load_package, resolve_package_path
from ivcontrast.config import Settings
from ivcontrast.store import read
from ivcontrast.store.db import Database
from ivcontrast.store.models import utcnow
from ivcontrast.vocabulary import JobKind
from ivcontrast.web.schemas import Check, HealthOut

log = logging.getLogger(__name__)

CLASSIFY_KIND = JobKind.CLASSIFY


def check_database(db: Database) -> Check:
    try:
        with db.session() as session:
            count = read.series_count(session)
    except SQLAlchemyError as exc:
        log.warning("health: database check failed: %s", exc)
        return Check(status="fail", detail=f"database unreachable: {type(exc).__name__}")
    return Check(status="ok", detail=f"reachable ({count} series)", data={"series": count})


def existing_parent(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (the spool appears with the first instance)."""
    probe = path.resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_spool(settings: Settings) -> Check:
    spool = settings.spool_path
    try:
        usage = shutil.disk_usage(existing_parent(spool))
    except OSError as exc:
        return Check(status="fail", detail=f"{spool}: cannot read free space: {exc.strerror}")
    free_mb = usage.free // (1024 * 1024)
    minimum = settings.scp.min_free_mb
    data = {
        "path": str(spool),
        "exists": spool.exists(),
        "free_mb": free_mb,
        "total_mb": usage.total // (1024 * 1024),
        "min_free_mb": minimum,
    }
    if free_mb < minimum:
        detail = f"{free_mb} MB free < {minimum} MB: the listener refuses new instances"
        return Check(status="fail", detail=detail, data=data)
    return Check(status="ok", detail=f"{free_mb} MB free (minimum {minimum} MB)", data=data)


def live_workers(db: Database, stale_seconds: float, now: datetime) -> list[dict[str, Any]]:
    with db.session() as session:
        rows = read.workers(session)
    out = []
    for w in rows:
        age = (now - w.heartbeat_at).total_seconds()
        if age <= stale_seconds:
            kinds = [k for k in w.kinds.split(",") if k]
            out.append({"id": w.id, "age_seconds": round(max(age, 0.0), 1), "kinds": kinds})
    return sorted(out, key=lambda w: w["age_seconds"])


def check_workers(workers: list[dict[str, Any]], stale_seconds: float) -> Check:
    if not workers:
        return Check(
            status="fail",
            detail=f"no worker heartbeat in the last {stale_seconds:g} s: nothing is processed",
            data={"live": 0},
        )
    newest = workers[0]["age_seconds"]
    return Check(
        status="ok",
        detail=f"{len(workers)} live worker(s); newest heartbeat {newest:g} s ago",
        data={"live": len(workers), "workers": workers},
    )


def model_notice(settings: Settings) -> str | None:
    """The sentence every dashboard page shows while the model needs validating at the site
    (phantoms only, or few real series)."""
    try:
        card = load_package(resolve_package_path(settings.classifier.model), verify=False).card
    except PackageError:
        return None  # the health strip says what is wrong
    if not card.needs_site_validation:
        return None
    return f"Model {card.name} {card.version}: {card.intended_use}"


def check_model(settings: Settings, workers: list[dict[str, Any]] | None) -> Check:
    # The card and both files must be there; the checksums are the loading worker's job
    # (hashing the network on every probe would cost seconds).
    path = resolve_package_path(settings.classifier.model)
    try:
        card = load_package(path, verify=False).card
    except PackageError as exc:
        return Check(status="fail", detail=str(exc), data={"path": str(path)})
    data: dict[str, Any] = {
        "path": str(path),
        "name": card.name,
        "version": card.version,
        "architecture": card.architecture,
        "threshold": card.threshold,
        "regions": list(card.regions),
        "synthetic_only": card.synthetic_only,
        "needs_site_validation": card.needs_site_validation,
        "intended_use": card.intended_use,
    }
    loaders = [w["id"] for w in workers or [] if CLASSIFY_KIND in w["kinds"]]
    data["loaded_by"] = loaders
    if not loaders:
        detail = f"{card.name} {card.version} available; no live worker has a classifier loaded"
        return Check(status="warn", detail=detail, data=data)
    return Check(
        status="ok",
        detail=f"{card.name} {card.version} loaded by {len(loaders)} worker(s)",
        data=data,
    )


def health(settings: Settings, db: Database) -> HealthOut:
    now = utcnow()
    stale = settings.web.worker_stale_seconds
    checks = {"database": check_database(db), "spool": check_spool(settings)}
    workers: list[dict[str, Any]] | None = None
    if checks["database"].status == "ok":
        try:
            workers = live_workers(db, stale, now)
        except SQLAlchemyError as exc:
            checks["workers"] = Check(status="fail", detail=f"cannot read workers: {exc}")
    if "workers" not in checks:
        checks["workers"] = (
            check_workers(workers, stale)
            if workers is not None
            else Check(status="fail", detail="database unreachable")
        )
    checks["model"] = check_model(settings, workers)
    failed = any(c.status == "fail" for c in checks.values())
    return HealthOut(
        status="fail" if failed else "ok", version=__version__, checked_at=now, checks=checks
    )


def public_summary(report: HealthOut) -> dict[str, Any]:
    """What a load balancer needs: the overall status and each check's, nothing about the
    host (no paths, sizes, worker ids, model or version)."""
    return {
        "status": report.status,
        "checked_at": report.checked_at.isoformat(),
        "checks": {name: {"status": check.status} for name, check in report.checks.items()},
    }
