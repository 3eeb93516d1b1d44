"""Run a source into the catalog: batch, upsert, checkpoint, count, report.

Each batch and the checkpoint after it commit in one transaction; a crash or Ctrl-C loses at most the
batch in flight, and the next run of the same target resumes from the saved checkpoint. A finished run
clears its checkpoint, so running the same file again re-reads it (and adds nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from papersift.ingest.base import Checkpoint, Record, SourceSpec
from papersift.ingest.parallel import parsed_in_subprocess
from papersift.models import Paper, Problem
from papersift.store.base import Store, UpsertResult

MAX_KEPT_PROBLEMS = 1000


@dataclass
class IngestReport:
    source: str
    target: str
    seen: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    resumed_from: str | None = None
    status: str = "running"
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(seen=self.seen, added=self.added, updated=self.updated,
                    unchanged=self.unchanged, skipped=self.skipped)

    def summary(self) -> str:
        where = f"{self.source} {self.target}" if self.target else self.source
        text = (f"{where}: {self.seen:,} records, {self.added:,} added, "
                f"{self.updated:,} updated, {self.unchanged:,} unchanged, {self.skipped:,} skipped")
        if self.resumed_from:
            text += f" (resumed after {self.resumed_from})"
        return text


def ingest_records(store: Store, source: str, target: str, records: Iterable[Record], *,
                   batch_size: int = 2000, resume_key: str | None = None, resumed_from: str | None = None,
                   on_progress: Callable[[IngestReport], None] | None = None) -> IngestReport:
    """Write a record stream into `store`; returns the report. Re-raises KeyboardInterrupt after
    recording the run as interrupted (the last committed batch is the resume point)."""
    report = IngestReport(source, target, resumed_from=resumed_from)
    run_id = store.start_ingest_run(source, target)
    pending: list[Paper] = []
    last_checkpoint: str | None = None

    def flush() -> None:
        nonlocal pending
        checkpoint = (resume_key, last_checkpoint) if resume_key and last_checkpoint is not None else None
        if not pending and checkpoint is None:
            return
        result: UpsertResult = store.upsert_papers(pending, checkpoint=checkpoint)
        report.added += result.added
        report.updated += result.updated
        report.unchanged += result.unchanged
        pending = []
        if on_progress:
            on_progress(report)

    try:
        for record in records:
            if isinstance(record, Checkpoint):
                last_checkpoint = record.position
                if record.flush or len(pending) >= batch_size:
                    flush()
            elif isinstance(record, Problem):
                report.seen += 1
                report.skipped += 1
                if len(report.problems) < MAX_KEPT_PROBLEMS:
                    report.problems.append(record)
            else:
                report.seen += 1
                pending.append(record)
                if len(pending) >= batch_size and resume_key is None:
                    flush()
                elif len(pending) >= 4 * batch_size:
                    # a source that checkpoints rarely must not hold unbounded memory
                    flush()
        flush()
        if resume_key:
            store.clear_checkpoint(resume_key)
        report.status = "done"
    except KeyboardInterrupt:
        report.status = "interrupted"
        raise
    except BaseException:
        report.status = "failed"
        raise
    finally:
        store.finish_ingest_run(run_id, report.status, report.counts(), [str(p) for p in report.problems])
    return report


def run_source(store: Store, spec: SourceSpec, target: str, settings, *, opts: dict | None = None,
               fresh: bool = False, parallel: bool = True,
               on_progress: Callable[[IngestReport], None] | None = None) -> IngestReport:
    """Ingest `target` with the source `spec`, resuming from a saved checkpoint unless `fresh`.
    Sources marked `parallel` are parsed in a second process unless `parallel=False`."""
    opts = {name: None for name, _ in spec.options} | dict(opts or {})
    key = spec.resume_key(target, opts)
    start = None
    if key:
        if fresh:
            store.clear_checkpoint(key)
        else:
            start = store.get_checkpoint(key)
    if spec.parallel and parallel:
        records = parsed_in_subprocess(spec, target, settings, start, opts)
    else:
        records = spec.open(target, settings, start, opts)
    return ingest_records(store, spec.name, target, records, batch_size=settings.batch_size,
                          resume_key=key, resumed_from=start, on_progress=on_progress)
