"""Search and related-paper speed at the full arxiv-daily corpus (74,728 papers), on this machine.

    .venv/bin/python bench/search_speed.py [--workdir bench/results/work/speed] [--vectors titles|embed]

Steps, each timed: ingest the corpus, sync the full-text index, put a vector for every paper in the
catalog, build the HNSW index; then load everything as a server would (a fresh Searcher) and time
  * search end to end (Searcher.search_page: spelling check, query embedding, lexical + dense, fusion,
    paper rows for the page), and each part alone, p50 / p99 over 1,000 realistic queries (--queries);
  * related papers (rank.related.related_papers) for 500 random papers;
  * the process's peak RSS.
`--vectors embed` embeds every paper with the default model (about 45 min on 2 idle cores at ~28
abstracts/s); `--vectors titles` stores the MiniLM title vectors of bench/results/minilm_titles.npy
(written by bench/vectors_scale.py --embed-titles) under the default model's key instead: the same
model and dimension, so index and query latency are what a real catalog shows, in minutes; the JSON
says which was used. The work folder is kept, so a second run only measures queries.
Run it alone on the machine: the JSON records the load average around it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"
TITLES = ROOT / "bench" / "results" / "minilm_titles.npy"
sys.path.insert(0, str(ROOT))

from papersift.index.build import build_index, index_folder, lexical_folder, model_key, sync_vector_index  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.lexical import open_lexical_index  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.ingest import get_source  # noqa: E402
from papersift.ingest.runner import run_source  # noqa: E402
from papersift.rank.related import related_papers  # noqa: E402
from papersift.rank.search import Searcher  # noqa: E402
from papersift.settings import load_settings  # noqa: E402
from papersift.store import open_store  # noqa: E402


def percentiles(ms: list[float]) -> dict:
    a = np.array(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2), "n": len(ms)}


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
    return out


def make_queries(n: int = 200, seed: int = 0) -> list[str]:
    """Typed-style queries: 2–6 consecutive title words of random papers, plus a few misspelt ones
    and a few pasted abstracts (the long tail a real search box sees)."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    rng = random.Random(seed)
    queries = []
    for r in rng.sample(records, n):
        words = r["title"].split()
        size = rng.randint(2, 6)
        start = rng.randint(0, max(0, len(words) - size))
        queries.append(" ".join(words[start:start + size]))
    for i in range(0, n, 20):  # 5 %: a letter dropped from the longest word
        words = queries[i].split()
        longest = max(range(len(words)), key=lambda j: len(words[j]))
        w = words[longest]
        words[longest] = w[:len(w) // 2] + w[len(w) // 2 + 1:]
        queries[i] = " ".join(words)
    for i, r in enumerate(rng.sample(records, n // 40)):  # 2.5 %: pasted abstracts
        queries[i * 40 + 7] = r["abstract"]
    return queries


def prepare(workdir: Path, vectors: str) -> dict:
    seconds: dict[str, float] = {}
    settings = load_settings(overrides={"data_dir": str(workdir)})
    store = open_store(str(workdir / "catalog.db"), migrate=True)
    embedder = create_embedder(settings.embedder, workdir / "models")
    if store.count_papers() == 0:
        t = time.perf_counter()
        run_source(store, get_source("arxiv-daily"), str(CORPUS), settings)
        seconds["ingest"] = time.perf_counter() - t
    if vectors == "titles" and not store.embedding_models().get(model_key(embedder)):
        titles = np.load(TITLES)
        t = time.perf_counter()
        store.sync_fulltext()
        seconds["fulltext"] = time.perf_counter() - t
        row_of = {}
        with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
            for row, line in enumerate(f):
                row_of[json.loads(line)["id"]] = row
        arxiv_of = {p.id: p.arxiv_id for p in store.iter_papers()}
        pending = [(pid, seq) for pid, seq, *_ in store.papers_to_embed(model_key(embedder), limit=10**7)
                   if arxiv_of.get(pid) in row_of]
        store.save_embeddings(model_key(embedder), pending, titles[[row_of[arxiv_of[pid]] for pid, _ in pending]])
        rows = pending
        print(f"stored {len(rows):,} title vectors", flush=True)
        t = time.perf_counter()
        _, action = sync_vector_index(store, embedder, index_folder(workdir, embedder))
        seconds["vector_index"] = time.perf_counter() - t
        print(f"vector index: {action}", flush=True)
    t = time.perf_counter()
    report = build_index(store, embedder, workdir)  # embeds whatever is missing (all of it with --vectors embed)
    seconds["index_step"] = time.perf_counter() - t
    print(report.summary(), flush=True)
    store.close()
    return {k: round(v, 1) for k, v in seconds.items()}


def measure(workdir: Path, n_queries: int = 1000) -> dict:
    settings = load_settings(overrides={"data_dir": str(workdir)})
    t = time.perf_counter()
    store = open_store(str(workdir / "catalog.db"))
    embedder = create_embedder(settings.embedder, workdir / "models")
    index = open_or_none(index_folder(workdir, embedder), expect_model=model_key(embedder))
    bm25 = open_lexical_index(lexical_folder(workdir))
    searcher = Searcher(store, embedder, index, bm25=bm25)
    embedder.embed(["warm up"])
    searcher.search("warm up")
    load_seconds = time.perf_counter() - t
    t = time.perf_counter()
    store.warm_spelling(wait=True)  # what `papersift serve` starts in the background when it starts
    vocabulary_seconds = time.perf_counter() - t
    queries = make_queries(n_queries)
    out: dict = {"papers": store.count_papers(), "index_kind": index.kind, "load_seconds": round(load_seconds, 2),
                 "spelling_vocabulary_seconds": round(vocabulary_seconds, 2)}
    times = timed(lambda q: searcher.search_page(q, limit=20), queries)
    out["search"] = percentiles(times)
    pasted = [len(q.split()) > 40 for q in queries]
    out["search_typed"] = percentiles([t for t, p in zip(times, pasted) if not p])
    out["search_pasted_abstracts"] = percentiles([t for t, p in zip(times, pasted) if p])
    out["query_embedding"] = percentiles(timed(lambda q: embedder.embed([q]), queries))
    out["lexical"] = percentiles(timed(lambda q: searcher.lexical(q, 100, None), queries))
    out["lexical_fts5"] = percentiles(timed(lambda q: store.search_fulltext(q, 100), queries[:50]))
    vectors = embedder.embed(queries)
    out["vector_index"] = percentiles(timed(lambda v: index.search(v, 100), vectors))
    out["spelling"] = percentiles(timed(store.spelling_corrections, queries))
    ids = [p.arxiv_id for p in store.iter_papers()]
    sample = random.Random(1).sample(ids, 500)
    key = model_key(embedder)
    out["related"] = percentiles(timed(lambda ref: related_papers(store, index, key, embedder.dim, ref, k=10), sample))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default=str(ROOT / "bench" / "results" / "work" / "speed"))
    ap.add_argument("--vectors", choices=["titles", "embed"], default="titles")
    ap.add_argument("--queries", type=int, default=1000, help="how many queries (same mix; 200 before 2026-12-01)")
    ap.add_argument("--prepare-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_speed.json"))
    args = ap.parse_args()
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if args.prepare_only:
        print("BUILD " + json.dumps(prepare(workdir, args.vectors)))
        return
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    # building runs in a child process, so the peak RSS below is the serving process's own
    child = subprocess.run([sys.executable, __file__, "--prepare-only", "--workdir", str(workdir),
                            "--vectors", args.vectors], check=True, capture_output=True, text=True)
    print(child.stdout, end="", flush=True)
    build = json.loads(child.stdout.rsplit("BUILD ", 1)[1])
    result = {"corpus": "arxiv-daily, 74,728 papers", "vectors": args.vectors, "build_seconds": build,
              **measure(workdir, args.queries),
              "targets": {"search_p50_ms": 15, "search_p99_ms": 60, "related_p50_ms": 2, "rss_mb": 1200},
              "machine": {"loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
