"""Write-back: corrected copies of classified series and a DICOM report of the finding.

Off by default. When ``[writeback] enabled = true``, the step that records a classification
result calls :func:`enqueue_writeback` in the same transaction; it queues one ``writeback``
job per configured destination (a folder, or a DICOM node over C-STORE) for that series
version. A worker runs the jobs with :class:`ivcontrast.writeback.handler.WritebackHandler`,
retrying with exponential backoff; jobs that fail for good wait for
``ivcontrast writeback retry``.

Modules: ``policy`` (which results, which tag values), ``uids`` (deterministic UIDs),
``correct`` (one corrected instance), ``report`` (the SR), ``destinations`` (folder,
C-STORE SCU, each opened by its kind through ``open_destination``), ``enqueue`` and
``handler`` (the job queue side).
"""

from ivcontrast.writeback.enqueue import WRITEBACK, enqueue_writeback

__all__ = ["WRITEBACK", "enqueue_writeback"]
