"""Search quality on SciFact (protocol 1 of ../shared/data/README.md), every system in one run.

    .venv/bin/python bench/search_scifact.py [--out bench/results/search_scifact.json]

Queries: the 809 training claims; corpus: all 5,183 abstracts; relevant: each claim's cited_doc_ids.
Systems: BM25 (SQLite FTS5, field-weighted), dense (all-MiniLM-L6-v2 int8, 256 tokens), RRF(BM25,
dense) with k = 60, and papersift's default Searcher. nDCG@10 and Recall@100 with 95 % bootstrap CIs,
and a paired bootstrap of the default against the best baseline. The corpus is embedded here (a few
minutes on 2 cores): run it alone on the machine; the JSON records the load average around it.
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

from papersift.index.build import build_index, index_folder, model_key  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.rank.search import FusionParams, Searcher, fuse  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "search_scifact.json"))
    args = ap.parse_args()
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    docs, queries = load_scifact()
    print(f"{len(docs):,} abstracts, {len(queries):,} claims with relevant abstracts", flush=True)
    with tempfile.TemporaryDirectory(prefix="papersift-scifact-") as tmp:
        tmp = Path(tmp)
        store = open_store(str(tmp / "catalog.db"), migrate=True)
        # SciFact documents have no DOI or arXiv id: a DOI under the 10.5555 test prefix gives each
        # document its own identity in the catalog (titles alone could merge two documents)
        store.upsert_papers([Paper(title=title or f"SciFact {doc_id}", abstract=abstract, source="scifact",
                                   doi=f"10.5555/scifact.{doc_id}") for doc_id, (title, abstract) in docs.items()])
        embedder = create_embedder("minilm", tmp / "models")
        t = time.perf_counter()
        report = build_index(store, embedder, tmp)
        index_seconds = time.perf_counter() - t
        print(f"indexed in {index_seconds:.0f} s: {report.summary()}", flush=True)
        index = open_or_none(index_folder(tmp, embedder), expect_model=model_key(embedder))
        searcher = Searcher(store, embedder, index)
        doc_of = {p.id: p.doi.rsplit(".", 1)[1] for p in store.iter_papers()}
        runs: dict[str, list[list[str]]] = {"bm25": [], "dense": [], "rrf": [], "default": []}
        t = time.perf_counter()
        for _, text, _ in queries:
            lexical = searcher.lexical(text, 100, None)
            dense = searcher.dense(text, 100, None)
            rrf = fuse([(lexical, 1.0), (dense, 1.0)], 60.0)
            runs["bm25"].append([doc_of[i] for i in lexical])
            runs["dense"].append([doc_of[i] for i in dense])
            runs["rrf"].append([doc_of[i] for i in sorted(rrf, key=lambda i: (-rrf[i], i))][:100])
            hits = searcher.search(text, limit=100)
            runs["default"].append([h.paper_id.rsplit(".", 1)[1] for h in hits])
        query_seconds = time.perf_counter() - t
    results: dict = {"protocol": "SciFact train claims (../shared/data/README.md, protocol 1)",
                     "queries": len(queries), "documents": len(docs),
                     "default_params": vars(FusionParams()), "systems": {}}
    per_query = {}
    for name, ranked in runs.items():
        ndcg = np.array([ndcg_at_10(r, q[2]) for r, q in zip(ranked, queries)])
        rec = np.array([recall_at(r, q[2], 100) for r, q in zip(ranked, queries)])
        per_query[name] = ndcg
        results["systems"][name] = {"ndcg@10": round(float(ndcg.mean()), 4), "ndcg@10_ci95": bootstrap_ci(ndcg),
                                    "recall@100": round(float(rec.mean()), 4), "recall@100_ci95": bootstrap_ci(rec)}
        print(f"  {name:<8} nDCG@10 {ndcg.mean():.4f} {bootstrap_ci(ndcg)}  R@100 {rec.mean():.4f}", flush=True)
    best = max(("bm25", "dense", "rrf"), key=lambda n: per_query[n].mean())
    diff = per_query["default"] - per_query[best]
    results["paired_default_vs_best_baseline"] = {"baseline": best, "mean_diff": round(float(diff.mean()), 4),
                                                  "ci95": bootstrap_ci(diff)}
    results["seconds"] = {"index": round(index_seconds, 1), "queries_all_systems": round(query_seconds, 1)}
    results["machine"] = {"loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]}
    results["targets"] = {"default_ndcg@10": 0.75, "beat_rrf_with_ci_excluding_zero": True}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
