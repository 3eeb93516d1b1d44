"""Ingest throughput, peak memory and catalog size, with the parse-only floor measured in the same run.

    .venv/bin/python bench/ingest.py [--kaggle-lines 1000000] [--out bench/results/ingest.json]

Cases (each in a fresh process; peak RSS = its VmHWM; the parsing child's peak is an upper bound,
since ru_maxrss of a forked child counts pages shared with its parent):
  arxiv-daily   all 74,728 papers of ../shared/data/arxiv-daily into a fresh SQLite catalog, then again
                (re-ingest must add 0 rows)
  kaggle-N      a synthetic Kaggle-snapshot file built from the real records (re-keyed ids, real text),
                at 100k lines and at N lines: memory must stay flat whatever the size
Baselines: reading + json.loads only, and the full parser without the catalog (the floor for any
catalog), each on the same files. Peak RSS includes the parsing child process.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARXIV_DAILY = ROOT.parent / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"

_CHILD = r"""
import json, resource, sys, time
mode, source, path, db = sys.argv[1:5]
t = time.perf_counter()
if mode == "json":
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    n = 0
    with opener(path, "rb") as f:
        for line in f:
            json.loads(line); n += 1
    out = {"records": n}
elif mode == "parse":
    from papersift.ingest import get_source
    from papersift.models import Paper
    from papersift.settings import load_settings
    spec = get_source(source)
    n = sum(1 for r in spec.open(path, load_settings({"data_dir": "/tmp"}), None, {}) if isinstance(r, Paper))
    out = {"records": n}
else:
    from papersift.ingest import get_source
    from papersift.ingest.runner import run_source
    from papersift.settings import load_settings
    from papersift.store import open_store
    store = open_store(db, migrate=True)
    settings = load_settings({"database_url": db})
    t = time.perf_counter()  # parse + upsert only: imports and catalog creation are not ingest work
    r = run_source(store, get_source(source), path, settings)
    elapsed = time.perf_counter() - t
    # folded into the file only to measure its size (a normal run leaves this to SQLite's auto-checkpoint)
    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    out = {"records": r.seen, "added": r.added, "updated": r.updated, "unchanged": r.unchanged,
           "skipped": r.skipped, "papers_in_catalog": store.count_papers(), "seconds": elapsed}
out.setdefault("seconds", time.perf_counter() - t)
out["per_second"] = out["records"] / out["seconds"]
# VmHWM is this process's own peak since exec (ru_maxrss would include the forking parent's pages)
hwm_kb = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")))
out["peak_rss_mb"] = round(hwm_kb / 1024, 1)
out["peak_rss_parse_child_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
print(json.dumps(out))
"""


def run_case(mode: str, source: str, path: Path, db: Path | None = None) -> dict:
    cmd = [sys.executable, "-c", _CHILD, mode, source, str(path), str(db or "")]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"{mode} {source} {path} failed:\n{result.stderr}")
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for k in ("seconds", "per_second"):
        out[k] = round(out[k], 2 if k == "seconds" else 0)
    print(f"  {mode:<7} {source:<12} {path.name:<32} {out['records']:>9,} rec  {out['seconds']:>7.1f} s  "
          f"{out['per_second']:>7,.0f}/s  peak {out['peak_rss_mb']} MB (+ parse child {out['peak_rss_parse_child_mb']} MB)",
          flush=True)
    return out


def build_kaggle_file(path: Path, lines: int) -> None:
    """Kaggle snapshot records made from real arxiv-daily papers, re-keyed with synthetic unique ids
    (months 3001…, beyond any real id) so every line is a distinct paper."""
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        real = [json.loads(line) for line in f]
    with open(path, "w", encoding="utf-8") as out:
        for n in range(lines):
            r = real[n % len(real)]
            month, serial = divmod(n, 99999)
            new_id = f"{3001 + month // 12 * 100 + month % 12:04d}.{serial + 1:05d}"
            authors = r["authors"]
            record = {
                "id": new_id, "submitter": authors[0] if authors else None,
                "authors": ", ".join(authors), "title": r["title"], "comments": r.get("comment"),
                "journal-ref": None, "doi": None, "report-no": None, "categories": " ".join(r["categories"]),
                "license": "http://creativecommons.org/licenses/by/4.0/", "abstract": "  " + r["abstract"] + "\n",
                "versions": [{"version": "v1", "created": "Mon, 2 Apr 2007 19:18:42 GMT"}],
                "update_date": r["first_listed"],
                "authors_parsed": [[a.split()[-1], " ".join(a.split()[:-1]), ""] for a in authors if a.split()],
            }
            out.write(json.dumps(record) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kaggle-lines", type=int, default=1_000_000)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ingest.json"))
    ap.add_argument("--skip-kaggle", action="store_true",
                    help="re-measure arxiv-daily only; keep the kaggle figures already in --out")
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    results: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                 "loadavg_before": load_before}}
    with tempfile.TemporaryDirectory(prefix="papersift-bench-") as tmp:
        tmp = Path(tmp)
        print("arxiv-daily (74,728 real papers)")
        db = tmp / "daily.db"
        results["arxiv_daily"] = {
            "baseline_json_only": run_case("json", "arxiv-daily", ARXIV_DAILY),
            "baseline_parse_only": run_case("parse", "arxiv-daily", ARXIV_DAILY),
            "ingest": run_case("ingest", "arxiv-daily", ARXIV_DAILY, db),
            "reingest": run_case("ingest", "arxiv-daily", ARXIV_DAILY, db),
        }
        papers = results["arxiv_daily"]["ingest"]["papers_in_catalog"]
        size = db.stat().st_size
        results["arxiv_daily"]["catalog_bytes"] = size
        results["arxiv_daily"]["catalog_mb_per_1000_papers"] = round(size / papers * 1000 / 2**20, 3)
        results["kaggle"] = {}
        if args.skip_kaggle and Path(args.out).exists():
            results["kaggle"] = json.loads(Path(args.out).read_text()).get("kaggle", {})
        for lines in ([] if args.skip_kaggle else sorted({100_000, args.kaggle_lines})):
            path = tmp / f"kaggle-{lines}.json"
            t = time.perf_counter()
            build_kaggle_file(path, lines)
            print(f"kaggle synthetic, {lines:,} lines ({path.stat().st_size / 2**20:,.0f} MB, "
                  f"built in {time.perf_counter() - t:.0f} s)")
            case = {"lines": lines, "file_mb": round(path.stat().st_size / 2**20)}
            case["baseline_parse_only"] = run_case("parse", "kaggle", path)
            kdb = tmp / f"kaggle-{lines}.db"
            case["ingest"] = run_case("ingest", "kaggle", path, kdb)
            case["catalog_mb_per_1000_papers"] = round(kdb.stat().st_size / case["ingest"]["papers_in_catalog"]
                                                       * 1000 / 2**20, 3)
            results["kaggle"][str(lines)] = case
            path.unlink()
            kdb.unlink()
    results["machine"]["loadavg_after"] = Path("/proc/loadavg").read_text().split()[:3]
    results["targets"] = {"ingest_per_second": 5000, "reingest_adds": 0, "kaggle_peak_rss_mb": 300}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
