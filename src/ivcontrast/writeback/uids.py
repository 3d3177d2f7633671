"""Deterministic UIDs for corrected copies and reports.

Every UID is a hash of what it stands for (the original series UID, the result's series
version and, for an instance, its original SOP Instance UID), so a retried job produces
the same UIDs: a PACS that already holds part of a copy sees the rest of the same series,
not a second one. A re-opened series (a new version) gets new UIDs: it is a new copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.uid import generate_uid


def stable_uid(prefix: str, *parts: str) -> str:
    """A UID under ``prefix`` that is a hash of ``parts``: the same parts, the same UID."""
    return str(generate_uid(prefix=prefix, entropy_srcs=["ivcontrast", *parts]))


@dataclass(frozen=True)
class WritebackUids:
    """The UIDs one result version is written back under."""

    prefix: str
    original_series_uid: str
    series_version: int
    keep: bool  # uid_policy 'keep': corrected copies carry the original UIDs

    @property
    def copies_series_uid(self) -> str:
        if self.keep:
            return self.original_series_uid
        return stable_uid(self.prefix, "copies", self.original_series_uid, str(self.series_version))

    def copy_sop_uid(self, original_sop_uid: str) -> str:
        if self.keep:
            return original_sop_uid
        return stable_uid(self.prefix, "copy", self.copies_series_uid, original_sop_uid)

    @property
    def report_series_uid(self) -> str:
        return stable_uid(
            self.prefix, "report-series", self.original_series_uid, str(self.series_version)
        )

    @property
    def report_sop_uid(self) -> str:
        return stable_uid(self.prefix, "report", self.original_series_uid, str(self.series_version))

    def named(self, what: str) -> str:
        """Any further UID of this write-back (tracking identifiers, the observer device)."""
        return stable_uid(self.prefix, what, self.original_series_uid, str(self.series_version))
