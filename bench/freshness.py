"""Freshness: how long until a day's new papers are searchable in a 74.7k-paper catalog.

    .venv/bin/python bench/freshness.py [--new 250] [--embedder minilm]

Needs the catalog that bench/search_speed.py leaves in bench/results/work/speed; works on a copy of it.
Adds `--new` papers the catalog has never seen (ACM-CR records: real titles and abstracts, their own
DOIs), runs the index step in its two stages and checks after each that every new paper is the first hit
when its title is searched: after the full text and BM25 delta (what a running server searches by
keyword while the embeddings are computed), then after the embeddings and HNSW adds. Seconds per step.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEED = ROOT / "bench" / "results" / "work" / "speed"
ACM = ROOT.parent / "shared" / "data" / "acm-cr" / "corpus.jsonl.gz"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import write_result  # noqa: E402

from papersift.index import build  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.lexical import open_lexical_index  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.rank.search import Searcher  # noqa: E402
from papersift.store import open_store  # noqa: E402


def new_papers(n: int) -> list[Paper]:
    out = []
    with gzip.open(ACM, "rt", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("title") and r.get("abstract") and len(r["title"].split()) >= 6:
                out.append(Paper(title=" ".join(r["title"].split()), abstract=r["abstract"], doi=r["doi"],
                                 authors=tuple(r.get("authors") or ()), source="acm-cr"))
            if len(out) == n:
                return out
    return out


def misses(searcher: Searcher, papers: list[Paper]) -> list[dict]:
    """The new papers whose own title does not find them first."""
    out = []
    for p in papers:
        first = searcher.search(p.title, limit=1)[0]
        if first.paper_id != f"doi:{p.doi.lower()}":
            out.append({"title": p.title, "doi": p.doi, "first_hit": first.paper_id, "reason": first.reason})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", type=int, default=250)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "freshness.json"))
    args = ap.parse_args()
    if not (SPEED / "catalog.db").exists():
        raise SystemExit("run bench/search_speed.py first: it builds bench/results/work/speed")
    with tempfile.TemporaryDirectory(prefix="papersift-fresh-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        shutil.copytree(SPEED, work, dirs_exist_ok=True)
        copy_seconds = time.perf_counter() - t
        store = open_store(str(work / "catalog.db"))
        embedder = create_embedder(args.embedder, work / "models")
        embedder.embed(["warm up"])  # model load is not part of a day's update
        before = store.count_papers()
        papers = new_papers(args.new)
        t = time.perf_counter()
        store.upsert_papers(papers)
        upsert = time.perf_counter() - t
        # Stage 1, keyword search: the full text and BM25 index take the new papers first, and a
        # running server reloads BM25 as soon as it is replaced (rank/service.py), while the vector
        # index it holds still lacks them: check the titles against exactly that.
        old_vectors = open_or_none(build.index_folder(work, embedder), expect_model=build.model_key(embedder))
        report = build.IndexReport()
        t = time.perf_counter()
        build.sync_keyword_indexes(store, work, report)  # build_index's first stage
        keyword_seconds = time.perf_counter() - t
        early = Searcher(store, embedder, old_vectors, bm25=open_lexical_index(build.lexical_folder(work)))
        missed_early = misses(early, papers)
        # Stage 2: build_index's second, embeddings and the vector index
        t = time.perf_counter()
        build.sync_vectors(store, embedder, work, report)
        index_seconds = time.perf_counter() - t
        vectors = open_or_none(build.index_folder(work, embedder), expect_model=build.model_key(embedder))
        searcher = Searcher(store, embedder, vectors, bm25=open_lexical_index(build.lexical_folder(work)))
        missed = misses(searcher, papers)
        result = {"catalog_papers_before": before, "new_papers": len(papers), "embedder": build.model_key(embedder),
                  "seconds": {"upsert": round(upsert, 2), "fulltext_and_bm25": round(keyword_seconds, 2),
                              "keyword_searchable_after": round(upsert + keyword_seconds, 2),
                              "embed_and_vector_index": round(index_seconds, 2),
                              "searchable_after": round(upsert + keyword_seconds + index_seconds, 2),
                              "steps": report.seconds},
                  "index_report": report.summary(),
                  "found_first_by_title_before_embedding": len(papers) - len(missed_early),
                  "missed_before_embedding": missed_early,
                  "found_first_by_title": len(papers) - len(missed), "missed": missed,
                  "copy_seconds": round(copy_seconds, 1),
                  "target_seconds": 10}
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
