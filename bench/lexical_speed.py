"""Speed and size of the in-memory BM25 index (index/lexical.py) at the full arxiv-daily corpus, with
SQLite FTS5 (store.search_fulltext) side by side in the same run.

    .venv/bin/python bench/lexical_speed.py [--catalog /tmp/exp/arxiv/catalog.db] [--out bench/results/lexical_speed.json]

The catalog (74,728 papers, full text synced; build one with `papersift ingest arxiv-daily …` and
`papersift index`) is copied into a temporary folder and never changed. Each step runs in its own
process, so its peak RSS is its own:
  * build: the index from scratch (tokenise, stem, count, write, fsync), seconds, peak RSS, files;
  * serve: open the saved index as a server would (seconds, RSS growth, bytes of the arrays held),
    then p50 / p99 over 200 queries: 190 typed (3–8 consecutive words of a random paper's title) and
    10 pasted abstracts; the same queries through FTS5; the same again under a category filter (the
    allowed ids as the Searcher passes them); and the stemmer alone, PyStemmer against the pure-Python
    snowballstemmer where that is installed (it is not a papersift dependency);
  * delta: 250 new papers (real ACM-CR records) and then 250 changed ones (new versions of catalog
    papers) upserted into the copy, each followed by a timed sync_lexical_index (a delta segment),
    then typed-query latency with that delta in place.
Run it alone on the machine (2 cores here): the JSON records the load average at start and end.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import write_result  # noqa: E402

from papersift.index.lexical import LexicalIndex, open_lexical_index, sync_lexical_index  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.store import open_store  # noqa: E402
from papersift.store.fulltext import Filters  # noqa: E402

ACM_CR = ROOT.parent / "shared" / "data" / "acm-cr" / "corpus.jsonl.gz"
N_QUERIES, N_PASTED, N_DELTA = 200, 10, 250
TARGETS = {"typed_p50_ms": 3, "typed_p99_ms": 15}


def percentiles(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(a.mean()), 3), "max_ms": round(float(a.max()), 3), "n": len(ms)}


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def memory_mb() -> dict:
    """This process's resident memory now (anonymous and file-backed, e.g. memory maps) and at peak."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    kb = {k: int(fields[k].split()[0]) for k in ("RssAnon", "RssFile")}
    return {"anon_mb": round(kb["RssAnon"] / 1024, 1), "file_mb": round(kb["RssFile"] / 1024, 1),
            "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def make_queries(store, seed: int = 0) -> list[str]:
    """Typed queries: 3–8 consecutive words of a random catalog paper's title; and pasted abstracts."""
    papers = [(title, abstract) for _, _, title, abstract, _ in store.texts_since(0)]
    rng = random.Random(seed)
    queries = []
    for title, _ in rng.sample(papers, N_QUERIES - N_PASTED):
        words = title.split()
        size = rng.randint(3, 8)
        start = rng.randint(0, max(0, len(words) - size))
        queries.append(" ".join(words[start:start + size]))
    return queries + [abstract for _, abstract in rng.sample(papers, N_PASTED)]


def index_bytes(index: LexicalIndex) -> dict:
    """Bytes of the arrays a live index holds: postings memory-mapped, weights and the rest in RAM."""
    mapped = sum(a.nbytes for seg in (index.main, index.delta) for a in (seg.rows, seg.tfs))
    weights = sum(part[3].nbytes for part in index._parts)
    rest = sum(a.nbytes for seg in (index.main, index.delta) for a in (seg.ids, seg.lengths, seg.hashes, seg.indptr))
    rest += index.ids.nbytes + index.live.nbytes + (index._table.nbytes if index._table is not None else 0)
    rest += index._parts[1][2].nbytes  # the delta's rows, offset
    return {"postings_mapped_mb": round(mapped / 2**20, 1), "weights_mb": round(weights / 2**20, 1),
            "other_arrays_mb": round(rest / 2**20, 1)}


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)


def step_build(catalog: Path, folder: Path) -> dict:
    store = open_store(str(catalog))
    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    index, action = sync_lexical_index(store, folder)
    seconds = time.perf_counter() - t
    return {"action": action, "seconds": round(seconds, 2), "papers": len(index), "terms": len(index.main.hashes),
            "postings": len(index.main.rows), "disk_mb": folder_mb(folder), "memory": memory_mb()}


def step_serve(catalog: Path, folder: Path) -> dict:
    store = open_store(str(catalog))
    before = memory_mb()
    t = time.perf_counter()
    index = open_lexical_index(folder)
    load = time.perf_counter() - t
    after = memory_mb()
    out = {"load_seconds": round(load, 3), "memory_before_open": before, "memory_after_open": after,
           "arrays": index_bytes(index)}
    queries = make_queries(store)
    for q in queries[:20]:  # warm up: stem cache, page cache
        index.search(q, 100)
    typed, pasted = queries[:-N_PASTED], queries[-N_PASTED:]
    allowed = np.asarray(store.filtered_ids(Filters(category="cs.CL")), np.int64)
    out["lexical"] = {"typed": percentiles(timed(lambda q: index.search(q, 100), typed)),
                      "pasted_abstracts": percentiles(timed(lambda q: index.search(q, 100), pasted)),
                      "all": percentiles(timed(lambda q: index.search(q, 100), queries)),
                      "typed_filtered_cs.CL": percentiles(timed(lambda q: index.search(q, 100, allowed), typed))}
    out["filtered_ids_cs.CL"] = {"ids": len(allowed),
                                 **percentiles(timed(lambda f: store.filtered_ids(f), [Filters(category="cs.CL")] * 20))}
    fts = timed(lambda q: store.search_fulltext(q, 100), queries)
    out["fts5"] = {"typed": percentiles(fts[:-N_PASTED]), "pasted_abstracts": percentiles(fts[-N_PASTED:]),
                   "all": percentiles(fts),
                   "typed_filtered_cs.CL": percentiles(timed(
                       lambda q: store.search_fulltext(q, 100, Filters(category="cs.CL")), typed[:50]))}
    out["stemmer"] = stemmer_speed(store)
    out["memory_at_end"] = memory_mb()
    return out


def stemmer_speed(store) -> dict:
    """Cold stemming of the catalog's distinct words: what a build pays once per word (then cached)."""
    import Stemmer

    from papersift.index.lexical import MAX_WORD, STOPWORDS, Analyzer
    words = set()
    for _, _, title, abstract, authors in itertools.islice(store.texts_since(0), 20000):
        for text in (title, abstract, authors):
            words.update(Analyzer.words(text))
    words = sorted(w for w in words if w not in STOPWORDS and len(w) < MAX_WORD)
    out = {"distinct_words": len(words)}
    t = time.perf_counter()
    Stemmer.Stemmer("english").stemWords(words)
    out["pystemmer_us_per_word"] = round((time.perf_counter() - t) / len(words) * 1e6, 2)
    try:
        from snowballstemmer.english_stemmer import EnglishStemmer  # the pure-Python one, not its PyStemmer alias
    except ImportError:
        out["snowballstemmer_us_per_word"] = "not installed"
        return out
    t = time.perf_counter()
    EnglishStemmer().stemWords(words)
    out["snowballstemmer_us_per_word"] = round((time.perf_counter() - t) / len(words) * 1e6, 2)
    return out


def new_papers(n: int) -> list[Paper]:
    papers = []
    with gzip.open(ACM_CR, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("abstract") and r.get("title"):
                authors = r.get("authors") or []
                authors = authors.split(" and ") if isinstance(authors, str) else authors
                papers.append(Paper(title=r["title"], abstract=r["abstract"], doi=r["doi"], source="acm-cr",
                                    authors=tuple(str(a) for a in authors)))
            if len(papers) == n:
                return papers
    return papers


def step_delta(catalog: Path, folder: Path) -> dict:
    store = open_store(str(catalog))
    out = {}
    ids = [pid for pid, *_ in store.texts_since(0)]
    t = time.perf_counter()
    store.upsert_papers(new_papers(N_DELTA))
    out["upsert_new_seconds"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    _, out["new_action"] = sync_lexical_index(store, folder)
    out["sync_new_seconds"] = round(time.perf_counter() - t, 3)
    rng = random.Random(1)
    changed = [Paper(**{**vars(p), "id": None, "version": (p.version or 1) + 1, "title": p.title + " (revised)"})
               for p in store.get_papers(rng.sample(ids, N_DELTA))]
    store.upsert_papers(changed)
    t = time.perf_counter()
    index, out["changed_action"] = sync_lexical_index(store, folder)
    out["sync_changed_seconds"] = round(time.perf_counter() - t, 3)
    out["delta_papers"], out["main_papers"] = len(index.delta), len(index.main)
    queries = make_queries(store)[:-N_PASTED]
    for q in queries[:20]:
        index.search(q, 100)
    out["typed_with_delta"] = percentiles(timed(lambda q: index.search(q, 100), queries))
    return out


def run_step(step: str, catalog: Path, folder: Path) -> dict:
    child = subprocess.run([sys.executable, __file__, "--step", step, "--catalog", str(catalog), "--folder", str(folder)],
                           check=True, capture_output=True, text=True)
    return json.loads(child.stdout.rsplit("RESULT ", 1)[1])


def copy_catalog(source: Path, target: Path) -> None:
    """A consistent copy (SQLite's backup API), so the source catalog is only read."""
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--catalog", default="/tmp/exp/arxiv/catalog.db")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "lexical_speed.json"))
    ap.add_argument("--step", choices=["build", "serve", "delta"], help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        fn = {"build": step_build, "serve": step_serve, "delta": step_delta}[args.step]
        print("RESULT " + json.dumps(fn(Path(args.catalog), Path(args.folder))))
        return
    with tempfile.TemporaryDirectory(prefix="papersift-lexical-speed-") as tmp:
        catalog, folder = Path(tmp) / "catalog.db", Path(tmp) / "lexical"
        copy_catalog(Path(args.catalog), catalog)
        result: dict = {"corpus": "arxiv-daily", "catalog": args.catalog}
        for step in ("build", "serve", "delta"):
            print(f"{step} …", flush=True)
            result[step] = run_step(step, catalog, folder)
            print(json.dumps(result[step]), flush=True)
    typed = result["serve"]["lexical"]["typed"]
    result["targets"] = {**TARGETS, "met": typed["p50_ms"] <= TARGETS["typed_p50_ms"]
                         and typed["p99_ms"] <= TARGETS["typed_p99_ms"]}
    write_result(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
