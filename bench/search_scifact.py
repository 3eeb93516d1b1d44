"""Search quality on SciFact (protocol 1 of ../shared/data/README.md), every system in one run.

    .venv/bin/python bench/search_scifact.py [--out bench/results/search_scifact.json]

Queries: the 809 training claims; corpus: all 5,183 abstracts; relevant: each claim's cited_doc_ids.
Systems: BM25 (papersift's in-memory index; SQLite FTS5 as 'bm25_fts5'), TF-IDF cosine (1–2-grams,
sublinear tf: arxiv-sanity-lite's method; scikit-learn, bench only), dense (all-MiniLM-L6-v2 int8,
256 tokens), RRF(BM25, dense) with k = 60, and papersift's default Searcher. nDCG@10 and Recall@100
with 95 % bootstrap CIs, and a paired bootstrap of the default against the best baseline.

Tuning: a seeded 30 % of the claims is the tuning split (written to bench/results/scifact_tuning_ids.txt);
`--tune` grid-searches the fusion weights on it alone. Figures are reported on all claims and on the
other 70 % (never tuned on). The corpus is embedded here (a few minutes on 2 cores; `--workdir` keeps
it for the next run): run it alone on the machine; the JSON records the load average around it.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "data" / "scifact"
sys.path.insert(0, str(ROOT))

from papersift.index.build import build_index, index_folder, lexical_folder, model_key  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.lexical import open_lexical_index  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.rank.search import FusionParams, Searcher, fused_scores  # noqa: E402
from papersift.store import open_store  # noqa: E402


def load_scifact():
    csv.field_size_limit(1 << 30)
    docs = {}
    with open(SCIFACT / "corpus_train.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                sentences = ast.literal_eval(row["abstract"])
            except (ValueError, SyntaxError):
                sentences = [row["abstract"]]
            docs[row["doc_id"]] = (row["title"], " ".join(s.strip() for s in sentences))
    claims: dict[str, tuple[str, set[str]]] = {}
    with open(SCIFACT / "claims_train.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cited = set(re.findall(r"\d+", row.get("cited_doc_ids") or ""))
            text, rel = claims.get(row["id"], (row["claim"], set()))
            claims[row["id"]] = (text, rel | cited)
    queries = [(qid, text, {d for d in rel if d in docs}) for qid, (text, rel) in claims.items()]
    return docs, [q for q in queries if q[2]]


def ndcg_at_10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(10, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant)


def bootstrap_ci(values: np.ndarray, n: int = 2000, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def tuning_split(queries: list, seed: int = 0, share: float = 0.3) -> set[str]:
    ids = sorted(q[0] for q in queries)
    rng = np.random.default_rng(seed)
    return set(rng.permutation(ids)[: int(len(ids) * share)].tolist())


def tfidf_runs(docs: dict, queries: list, depth: int = 100) -> list[list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    names = list(docs)
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, stop_words="english")
    matrix = vectorizer.fit_transform([f"{t}. {a}" for t, a in docs.values()])
    q = vectorizer.transform([text for _, text, _ in queries])
    sims = (q @ matrix.T).toarray()
    top = np.argsort(-sims, axis=1)[:, :depth]
    return [[names[j] for j in row] for row in top]


def open_corpus(workdir: Path, docs: dict, spec: str = "minilm"):
    store = open_store(str(workdir / "catalog.db"), migrate=True)
    # SciFact documents have no DOI or arXiv id: a DOI under the 10.5555 test prefix gives each
    # document its own identity in the catalog (titles alone could merge two documents)
    store.upsert_papers([Paper(title=title or f"SciFact {doc_id}", abstract=abstract, source="scifact",
                               doi=f"10.5555/scifact.{doc_id}") for doc_id, (title, abstract) in docs.items()])
    embedder = create_embedder(spec, workdir / "models")
    t = time.perf_counter()
    report = build_index(store, embedder, workdir)
    seconds = time.perf_counter() - t
    print(f"indexed in {seconds:.0f} s: {report.summary()}", flush=True)
    index = open_or_none(index_folder(workdir, embedder), expect_model=model_key(embedder))
    return store, embedder, index, open_lexical_index(lexical_folder(workdir)), seconds


def tune(searcher: Searcher, queries: list, doc_of: dict, tuning: set[str]) -> None:
    """Grid over the fusion weights on the tuning split only; prints, changes nothing."""
    lists = [(searcher.lexical(text, 100, None), searcher.dense(text, 100, None), rel)
             for qid, text, rel in queries if qid in tuning]
    for method, grid in (("rrf", [(1.0, w, k) for k in (10, 30, 60) for w in (0.6, 0.8, 1.0)]),
                         ("convex", [(a, round(1 - a, 2), 60) for a in (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 0.9, 1.0)])):
        for wl, wd, k in grid:
            params = FusionParams(method=method, lexical_weight=wl, dense_weight=wd, k=k)
            values = []
            for lexical, dense, rel in lists:
                scores = fused_scores(lexical, dense, params)
                values.append(ndcg_at_10([doc_of[i] for i in sorted(scores, key=lambda i: (-scores[i], i))], rel))
            print(f"  {method:<7} w_lex {wl:<5} w_dense {wd:<5} k {k:<3} nDCG@10 {np.mean(values):.4f}", flush=True)


def summarise(runs: dict, queries: list, subset: list[int]) -> tuple[dict, dict]:
    systems, per_query = {}, {}
    for name, ranked in runs.items():
        ndcg = np.array([ndcg_at_10(ranked[i], queries[i][2]) for i in subset])
        rec = np.array([recall_at(ranked[i], queries[i][2], 100) for i in subset])
        per_query[name] = ndcg
        systems[name] = {"ndcg@10": round(float(ndcg.mean()), 4), "ndcg@10_ci95": bootstrap_ci(ndcg),
                         "recall@100": round(float(rec.mean()), 4), "recall@100_ci95": bootstrap_ci(rec)}
    return systems, per_query


def paired(per_query: dict) -> dict:
    best = max(("bm25", "bm25_fts5", "tfidf", "dense", "rrf"), key=lambda n: per_query[n].mean())
    diff = per_query["default"] - per_query[best]
    return {"baseline": best, "mean_diff": round(float(diff.mean()), 4), "ci95": bootstrap_ci(diff)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_scifact.json"))
    ap.add_argument("--workdir", help="keep the catalog and its index here and reuse them (default: a temp folder)")
    ap.add_argument("--embedder", default="minilm", help="embedder spec (default minilm; e.g. static)")
    ap.add_argument("--tune", action="store_true", help="grid-search fusion weights on the tuning split, then stop")
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    docs, queries = load_scifact()
    tuning = tuning_split(queries)
    (ROOT / "bench" / "results" / "scifact_tuning_ids.txt").write_text("\n".join(sorted(tuning, key=int)) + "\n")
    print(f"{len(docs):,} abstracts, {len(queries):,} claims with relevant abstracts, "
          f"{len(tuning)} in the tuning split", flush=True)
    with tempfile.TemporaryDirectory(prefix="papersift-scifact-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        store, embedder, index, bm25, index_seconds = open_corpus(workdir, docs, args.embedder)
        searcher = Searcher(store, embedder, index, bm25=bm25)
        doc_of = {p.id: p.doi.rsplit(".", 1)[1] for p in store.iter_papers()}
        if args.tune:
            tune(searcher, queries, doc_of, tuning)
            return
        runs: dict[str, list[list[str]]] = {"bm25": [], "bm25_fts5": [], "tfidf": tfidf_runs(docs, queries),
                                            "dense": [], "rrf": [], "default": []}
        t = time.perf_counter()
        for _, text, _ in queries:
            lexical = searcher.lexical(text, 100, None)
            dense = searcher.dense(text, 100, None)
            rrf = fused_scores(lexical, dense, FusionParams(method="rrf", lexical_weight=1.0, dense_weight=1.0, k=60))
            runs["bm25"].append([doc_of[i] for i, _ in lexical])
            runs["bm25_fts5"].append([doc_of[i] for i, _ in store.search_fulltext(text, 100)])
            runs["dense"].append([doc_of[i] for i, _ in dense])
            runs["rrf"].append([doc_of[i] for i in sorted(rrf, key=lambda i: (-rrf[i], i))][:100])
            hits = searcher.search(text, limit=100)
            runs["default"].append([h.paper_id.rsplit(".", 1)[1] for h in hits])
        query_seconds = time.perf_counter() - t
    results: dict = {"protocol": "SciFact train claims (../shared/data/README.md, protocol 1)",
                     "queries": len(queries), "documents": len(docs), "tuning_split_queries": len(tuning),
                     "embedder": model_key(embedder), "default_params": vars(searcher.params)}
    everything = list(range(len(queries)))
    held_out = [i for i, q in enumerate(queries) if q[0] not in tuning]
    for label, subset in (("all", everything), ("held_out", held_out)):
        systems, per_query = summarise(runs, queries, subset)
        results[label] = {"queries": len(subset), "systems": systems, "paired_default_vs_best_baseline": paired(per_query)}
        for name, row in systems.items():
            print(f"  {label:<8} {name:<8} nDCG@10 {row['ndcg@10']:.4f} {row['ndcg@10_ci95']}  R@100 {row['recall@100']:.4f}")
        print(f"  {label:<8} default vs best baseline: {results[label]['paired_default_vs_best_baseline']}", flush=True)
    results["seconds"] = {"index": round(index_seconds, 1), "queries_all_systems": round(query_seconds, 1)}
    results["machine"] = {"loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]}
    results["targets"] = {"default_ndcg@10": 0.75, "beat_best_baseline_with_ci_excluding_zero": True}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
