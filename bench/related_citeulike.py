"""Related-paper quality on CiteULike-a (protocol 4 of ../shared/data/README.md), every system in one run.

    .venv/bin/python bench/related_citeulike.py [--embedder minilm] [--out bench/results/related_citeulike.json]

Query: a paper (its title: CiteULike-a has no abstracts); relevant: its citations.dat neighbours (11,714
papers have at least one). The query paper is never among its own results. Systems:
  tfidf        TF-IDF cosine of titles (1–2-grams, sublinear tf; arxiv-sanity-lite's method; scikit-learn)
  bm25         papersift's BM25 index, the paper's title as the query
  dense        cosine of papersift's stored embeddings (rank/related.py with no readers in the catalog)
  rrf          RRF(bm25, dense), k = 60
  default      papersift's related_papers on a catalog without readers: what a new catalog shows
  default+readers  related_papers after the 5,551 users' libraries (users.dat) are loaded as saves, so
               co-saves count (the "co-interaction signal when present" of the design)
CO_WEIGHT of rank/related.py is checked on a tuning split (a seeded 30 % of the query papers, `--tune`);
figures are reported on all query papers and on the other 70 %. Mean with 95 % bootstrap CIs and a paired
bootstrap of each default against the best baseline. The work folder is kept (bench/results/work/citeulike).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "citeulike-a"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import per_query, print_table, summary, versus_best, write_result  # noqa: E402

from papersift.errors import NotFound  # noqa: E402
from papersift.index.build import build_index, index_folder, lexical_folder, model_key  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.lexical import open_lexical_index  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.rank import related  # noqa: E402
from papersift.rank.search import FusionParams, fused_scores  # noqa: E402
from papersift.store import open_store  # noqa: E402

K = 50
METRICS = ("recall@10", "recall@50", "mrr", "ndcg@10")
BASELINES = ("tfidf", "bm25", "dense", "rrf")


def clean_title(raw: str) -> str:
    return " ".join(re.sub(r"[{}\\]", "", raw).split())


def load() -> tuple[list[str], list[set[int]], list[list[int]]]:
    titles = [clean_title(t) for t in (DATA / "titles.txt").read_text(encoding="utf-8", errors="replace").splitlines()]
    cites = [set(map(int, line.split()[1:])) for line in (DATA / "citations.dat").read_text().splitlines()]
    users = [list(map(int, line.split()[1:])) for line in (DATA / "users.dat").read_text().splitlines()]
    return titles, cites, users


def open_catalog(workdir: Path, titles: list[str], spec: str):
    workdir.mkdir(parents=True, exist_ok=True)
    store = open_store(str(workdir / "catalog.db"), migrate=True)
    if store.count_papers() == 0:
        # no DOI or arXiv id: a 10.5555 test DOI per paper keeps same-titled papers apart
        store.upsert_papers([Paper(title=t or f"CiteULike {i}", source="citeulike", doi=f"10.5555/citeulike.{i}")
                             for i, t in enumerate(titles)])
    embedder = create_embedder(spec, workdir / "models")
    t = time.perf_counter()
    report = build_index(store, embedder, workdir)
    print(f"indexed in {time.perf_counter() - t:.0f} s: {report.summary()}", flush=True)
    index = open_or_none(index_folder(workdir, embedder), expect_model=model_key(embedder))
    return store, embedder, index, open_lexical_index(lexical_folder(workdir))


def tfidf_runs(titles: list[str], queries: list[int]) -> list[list[int]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    matrix = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, stop_words="english").fit_transform(titles)
    out = []
    for start in range(0, len(queries), 512):
        block = queries[start:start + 512]
        sims = (matrix[block] @ matrix.T).toarray()
        for row, q in zip(sims, block):
            row[q] = -1
            top = np.argpartition(-row, K)[:K]
            out.append(top[np.lexsort((top, -row[top]))].tolist())
    return out


def has_readers(store) -> bool:
    try:
        store.get_user("citeulike-0")
        return True
    except NotFound:
        return False


def load_readers(store, users: list[list[int]], row_of: dict[int, int]) -> None:
    id_of = {doc: pid for pid, doc in row_of.items()}
    for u, items in enumerate(users):
        user = store.create_user(f"citeulike-{u}")
        for doc in items:
            store.add_interaction(user.id, id_of[doc], "save")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--workdir", default=str(ROOT / "bench" / "results" / "work" / "citeulike"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "related_citeulike.json"))
    ap.add_argument("--tune", action="store_true", help="print CO_WEIGHT choices on the tuning split, then stop")
    args = ap.parse_args()
    titles, cites, users = load()
    workdir = Path(args.workdir) / args.embedder.replace(":", "-")
    store, embedder, index, bm25 = open_catalog(workdir, titles, args.embedder)
    row_of = {p.id: int(p.doi.rsplit(".", 1)[1]) for p in store.iter_papers()}
    id_of = {doc: pid for pid, doc in row_of.items()}
    queries = [p for p, c in enumerate(cites) if c]
    tuning = set(np.random.default_rng(0).permutation(queries)[: int(len(queries) * 0.3)].tolist())
    key = model_key(embedder)
    if has_readers(store):
        raise SystemExit(f"{workdir} already holds readers: remove it for a clean run")

    def related_run(db, qs: list[int]) -> list[list[int]]:
        return [[int(h.paper_id.rsplit(".", 1)[1]) for h in related.related_papers(db, index, key, embedder.dim,
                                                                                      id_of[q], k=K)] for q in qs]

    if args.tune:  # on a copy of the catalog, so the measured run starts without readers
        shutil.copy(workdir / "catalog.db", workdir / "tune.db")
        tune_db = open_store(str(workdir / "tune.db"))
        load_readers(tune_db, users, row_of)
        for weight in (0.0, 0.25, 0.5, 1.0, 2.0):
            related.CO_WEIGHT = weight
            values = per_query({"w": related_run(tune_db, sorted(tuning))}, [cites[q] for q in sorted(tuning)],
                               METRICS)
            print(f"  CO_WEIGHT {weight}: " + "  ".join(f"{m} {v.mean():.4f}" for m, v in values["w"].items()), flush=True)
        return
    runs: dict[str, list[list[int]]] = {"tfidf": tfidf_runs(titles, queries), "bm25": [], "dense": [], "rrf": []}
    t = time.perf_counter()
    for q in queries:
        own = id_of[q]
        lexical = [(pid, s) for pid, s in bm25.search(titles[q], K + 1) if pid != own][:K]
        vector = store.paper_embedding(key, own, embedder.dim)
        ids, scores = index.search(vector, K + 1)
        dense = [(int(i), float(s)) for i, s in zip(np.ravel(ids), np.ravel(scores)) if int(i) != own][:K]
        fused = fused_scores(lexical, dense, FusionParams(method="rrf", lexical_weight=1.0, dense_weight=1.0, k=60))
        runs["bm25"].append([row_of[p] for p, _ in lexical])
        runs["dense"].append([row_of[p] for p, _ in dense])
        runs["rrf"].append([row_of[p] for p in sorted(fused, key=lambda p: (-fused[p], p))][:K])
    baseline_seconds = time.perf_counter() - t
    t = time.perf_counter()
    runs["default"] = related_run(store, queries)
    default_ms = (time.perf_counter() - t) * 1000 / len(queries)
    t = time.perf_counter()
    load_readers(store, users, row_of)
    load_seconds = time.perf_counter() - t
    t = time.perf_counter()
    runs["default+readers"] = related_run(store, queries)
    readers_ms = (time.perf_counter() - t) * 1000 / len(queries)
    result = {"protocol": "CiteULike-a paper → cited papers (../shared/data/README.md, protocol 4)",
              "query_papers": len(queries), "papers": len(titles), "embedder": key, "co_weight": related.CO_WEIGHT,
              "tuning_split_queries": len(tuning)}
    for label, subset in (("all", list(range(len(queries)))),
                          ("held_out", [i for i, q in enumerate(queries) if q not in tuning])):
        values = per_query({n: [r[i] for i in subset] for n, r in runs.items()}, [cites[queries[i]] for i in subset],
                           METRICS)
        table = summary(values)
        print_table(f"{label}: {len(subset)} query papers", table)
        result[label] = {"systems": table,
                         "default_vs_best_baseline": versus_best(values, "default", BASELINES),
                         "default+readers_vs_best_baseline": versus_best(values, "default+readers", BASELINES)}
    result["seconds"] = {"baselines_all_queries": round(baseline_seconds, 1), "load_readers": round(load_seconds, 1),
                         "related_ms_per_query": round(default_ms, 2), "related_with_readers_ms": round(readers_ms, 2)}
    write_result(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
