"""The ingest runner: batches, bad records, checkpoints, and a real crash in the middle of a real ingest."""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from papersift.errors import SourceError
from papersift.ingest import get_source
from papersift.ingest.base import Checkpoint
from papersift.ingest.runner import ingest_records, run_source
from papersift.models import Paper, Problem

ARXIV_DAILY = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"


def real_lines(n: int, skip: int = 0) -> list[str]:
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        return list(itertools.islice(f, skip, skip + n))


def test_bad_records_are_reported_and_the_rest_lands(store, settings, tmp_path):
    lines = real_lines(50)
    good = [json.loads(line) for line in lines]
    missing_title = dict(good[3], title="  ")
    bad_date = dict(good[4], first_listed="31/02/2025")
    path = tmp_path / "mixed.jsonl"
    with open(path, "wb") as f:
        f.write("".join(lines[:3]).encode())
        f.write(b'{"id": "2503.99999", "title": "cut off mid-rec\n')          # line 4: broken JSON
        f.write((json.dumps(missing_title) + "\n").encode())                  # line 5: no title
        f.write((json.dumps(bad_date) + "\n").encode())                       # line 6: bad date
        f.write(b'{"id": "2503.88888", "title": "caf\xe9 latin-1"}\n')       # line 7: not UTF-8
        f.write(b"[1, 2, 3]\n")                                               # line 8: not an object
        f.write("".join(lines[5:]).encode())
    report = run_source(store, get_source("arxiv-daily"), str(path), settings)
    assert report.skipped == 5
    assert report.added == 48  # 3 + 45 good lines; lines[3] and lines[4] only appear as broken copies
    reasons = {p.position: p.reason for p in report.problems}
    assert set(reasons) == {"line 4", "line 5", "line 6", "line 7", "line 8"}
    assert "not JSON" in reasons["line 4"]
    assert "missing title" in reasons["line 5"]
    assert "date" in reasons["line 6"]
    assert "UTF-8" in reasons["line 7"]
    assert store.count_papers() == report.added
    # the run and its problems are on record
    assert store.stats().last_runs[0]["skipped"] == 5


def test_reingest_adds_nothing_and_clears_checkpoint(store, settings, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("".join(real_lines(300)), encoding="utf-8")
    spec = get_source("arxiv-daily")
    first = run_source(store, spec, str(path), settings)
    second = run_source(store, spec, str(path), settings)
    assert (first.added, second.added, second.unchanged) == (300, 0, 300)
    assert store.get_checkpoint(spec.resume_key(str(path), {})) is None


def test_in_process_and_subprocess_parsing_agree(store, settings, tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(real_lines(200, skip=1000))
    spec = get_source("arxiv-daily")
    a = list(spec.open(str(path), settings, None, {}))
    from papersift.ingest.parallel import parsed_in_subprocess

    b = list(parsed_in_subprocess(spec, str(path), settings, None, {}))
    assert a == b and len(a) == 400  # 200 papers, each followed by its checkpoint


def test_unreadable_file_is_a_clear_error(store, settings, tmp_path):
    for parallel in (True, False):
        with pytest.raises(SourceError, match="no such file") as e:
            run_source(store, get_source("arxiv-daily"), str(tmp_path / "nope.jsonl"), settings, parallel=parallel)
        assert e.value.hint


def test_failed_batch_keeps_earlier_batches_and_checkpoint(store):
    """A source that fails mid-stream: committed batches stay, the checkpoint marks where to resume."""
    def records():
        for n in range(1, 8):
            yield Paper(title=f"P{n}", arxiv_id=f"2401.{n:05d}", source="t")
            yield Checkpoint(str(n))
        raise SourceError("network gone")

    with pytest.raises(SourceError):
        ingest_records(store, "t", "x", records(), batch_size=3, resume_key="t:x")
    assert store.count_papers() == 6  # two whole batches of 3; the 7th paper was in flight
    assert store.get_checkpoint("t:x") == "6"
    assert store.stats().last_runs[0]["status"] == "failed"


def test_problems_are_counted_not_raised(store):
    records = [Problem("t", "line 1", "bad"), Paper(title="ok", arxiv_id="2401.00001", source="t")]
    report = ingest_records(store, "t", "x", records)
    assert (report.seen, report.added, report.skipped) == (2, 1, 1)


def _catalog_consistent(db: Path) -> tuple[int, int]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        papers, distinct = conn.execute("SELECT count(*), count(DISTINCT arxiv_id) FROM papers").fetchone()
        assert papers == distinct
        orphans = conn.execute(
            "SELECT count(*) FROM papers p WHERE authors != '[]' AND NOT EXISTS "
            "(SELECT 1 FROM paper_authors a WHERE a.paper_id = p.id)"
        ).fetchone()[0]
        assert orphans == 0  # every committed paper came with its author rows
        row = conn.execute("SELECT position FROM ingest_checkpoints").fetchone()
        return papers, int(row[0]) if row else 0
    finally:
        conn.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_ingest_resumes_without_duplicates(tmp_path, sig):
    """Kill a real `papersift ingest` process mid-run, check the catalog, run again: it resumes."""
    n = 12_000
    path = tmp_path / "big.jsonl"
    path.write_text("".join(real_lines(n)), encoding="utf-8")
    db = tmp_path / "catalog.db"
    env = dict(os.environ, PAPERSIFT_DATABASE_URL=str(db), PAPERSIFT_BATCH_SIZE="500")
    cmd = [sys.executable, "-m", "papersift.cli", "ingest", "arxiv-daily", str(path), "--quiet"]
    subprocess.run([sys.executable, "-m", "papersift.cli", "init"], env=env, check=True, capture_output=True)
    # Ctrl-C's default action in the child, as in a terminal: a suite started in the background by a
    # non-interactive shell inherits SIGINT ignored, and the ingest would then run to its end
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            with sqlite3.connect(db, timeout=1) as conn:
                if conn.execute("SELECT count(*) FROM papers").fetchone()[0] >= 2000:
                    break
        except sqlite3.OperationalError:
            continue
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert b"run the same command again to resume" in err
        assert b"Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    before, checkpoint = _catalog_consistent(db)
    assert 2000 <= before < n, "the kill must land mid-run"
    assert checkpoint == before  # one paper a line: the resume point is exactly what was committed
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed after {checkpoint}" in rerun.stdout
    after, leftover = _catalog_consistent(db)
    assert after == n and leftover == 0
    # a third run reads everything again and adds nothing
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert "0 added" in again.stdout and f"{n:,} unchanged" in again.stdout
