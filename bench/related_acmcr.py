"""Related-paper quality on ACM-CR (protocol 3 of ../shared/data/README.md), every system in one run.

    .venv/bin/python bench/related_acmcr.py [--embedder minilm] [--out bench/results/related_acmcr.json]

Query: title + abstract of each of the 50 citing papers (they are not in the index); relevant: its
references inside the index (no '-' marks in its .dois file). Systems: TF-IDF cosine, BM25 (papersift's
index, the paper's text as the query), dense (the paper's embedding against the vector index: what
rank/related.py does for a paper in the catalog with no readers, so also the default), RRF(BM25, dense),
and the convex fusion search uses. Recall@20/50 and nDCG@10 with 95 % bootstrap CIs and a paired
bootstrap against the best baseline. Reads the catalog that bench/search_acmcr.py builds
(bench/results/work/acmcr, embedded with the same embedder); it changes nothing there.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import per_query, print_table, summary, versus_best, write_result  # noqa: E402
from search_acmcr import acm_index, doi_of, tfidf_rank  # noqa: E402

from papersift.index.build import index_folder, lexical_folder, model_key, paper_text  # noqa: E402
from papersift.index.embed import create_embedder  # noqa: E402
from papersift.index.lexical import open_lexical_index  # noqa: E402
from papersift.index.vectors import open_or_none  # noqa: E402
from papersift.rank.search import FUSION_BY_MODEL, FusionParams, fused_scores  # noqa: E402
from papersift.store import open_store  # noqa: E402

K = 50
METRICS = ("recall@20", "recall@50", "ndcg@10")
BASELINES = ("tfidf", "bm25", "rrf")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--workdir", default=str(ROOT / "bench" / "results" / "work" / "acmcr"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "related_acmcr.json"))
    args = ap.parse_args()
    _, chosen, _, _, citing = acm_index(None)
    workdir = Path(args.workdir)
    store = open_store(str(workdir / "catalog.db"))
    embedder = create_embedder(args.embedder, workdir / "models")
    index = open_or_none(index_folder(workdir, embedder), expect_model=model_key(embedder))
    if index is None or len(index) < store.count_papers():
        raise SystemExit(f"{workdir} has no complete {model_key(embedder)} index: run bench/search_acmcr.py first")
    bm25 = open_lexical_index(lexical_folder(workdir))
    doi = doi_of(store)
    queries = [c for c in citing if c.references & set(chosen)]
    texts = [paper_text(c.title, c.abstract) for c in queries]
    runs = {"tfidf": tfidf_rank(list(chosen), [d.text for d in chosen.values()], texts, depth=K),
            "bm25": [], "dense": [], "rrf": [], "convex": []}
    convex = FUSION_BY_MODEL.get(embedder.name, FusionParams())
    vectors = embedder.embed(texts)
    for text, vector in zip(texts, vectors):
        lexical = bm25.search(text, K)
        ids, scores = index.search(vector, K)
        dense = [(int(i), float(s)) for i, s in zip(np.ravel(ids), np.ravel(scores))]
        rrf = fused_scores(lexical, dense, FusionParams(method="rrf", lexical_weight=1.0, dense_weight=1.0, k=60))
        fused = fused_scores(lexical, dense, convex)
        runs["bm25"].append([doi[i] for i, _ in lexical])
        runs["dense"].append([doi[i] for i, _ in dense])
        runs["rrf"].append([doi[i] for i in sorted(rrf, key=lambda i: (-rrf[i], i))][:K])
        runs["convex"].append([doi[i] for i in sorted(fused, key=lambda i: (-fused[i], i))][:K])
    values = per_query(runs, [c.references & set(chosen) for c in queries], METRICS)
    table = summary(values)
    print_table(f"ACM-CR related, {len(queries)} citing papers over {len(chosen):,} papers:", table)
    write_result(args.out, {
        "protocol": "ACM-CR paper → its references (../shared/data/README.md, protocol 3)",
        "query_papers": len(queries), "documents": len(chosen), "embedder": model_key(embedder),
        "default": "dense (rank/related.py on a catalog without readers)", "convex_params": vars(convex),
        "systems": table,
        "dense_vs_best_baseline": versus_best(values, "dense", BASELINES),
        "convex_vs_best_baseline": versus_best(values, "convex", BASELINES),
    })
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
