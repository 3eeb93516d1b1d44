"""BM25 quality on SciFact (protocol 1): papersift's in-memory index (index/lexical.py) against FTS5.

    .venv/bin/python bench/lexical_scifact.py [--out bench/results/lexical_scifact.json]

Queries: the 809 training claims; corpus: all 5,183 abstracts; relevant: each claim's cited_doc_ids
(loaded as bench/search_scifact.py does). Systems, in one run: the index with its defaults, SQLite FTS5
(store.search_fulltext, papersift's fallback for phrases and prefixes), and a small grid over k1, b,
the title weight and the stopword list, scored on the tuning split only (the claim ids in
bench/results/scifact_tuning_ids.txt; if missing, a seeded 30 %). The defaults are judged on the
other 70 % and on all claims, never tuned on; a grid point replaces a default only if it wins on the
tuning split by more than the noise there (its paired 95 % CI excludes 0). SciFact has no authors,
so the author weight is not tuned here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import paired_bootstrap, per_query, print_table, summary, write_result  # noqa: E402
from search_scifact import load_scifact, tuning_split  # noqa: E402

from papersift.index import lexical  # noqa: E402
from papersift.index.lexical import LexicalIndex, build_segment  # noqa: E402
from papersift.models import Paper  # noqa: E402
from papersift.store import open_store  # noqa: E402

TUNING_IDS = ROOT / "bench" / "results" / "scifact_tuning_ids.txt"
GRID = {"k1": (0.9, 1.2, 1.5, 2.0), "b": (0.5, 0.75, 0.9), "title_weight": (1.0, 2.0, 3.0),
        "stopwords": ("extended", "fts5")}
METRICS = ("ndcg@10", "recall@100")


def tuning_ids(queries: list) -> set[str]:
    if TUNING_IDS.exists():
        return set(TUNING_IDS.read_text().split())
    return tuning_split(queries)  # seeded: default_rng(0) permutation of the sorted ids, first 30 %


def open_catalog(workdir: Path, docs: dict):
    store = open_store(str(workdir / "catalog.db"), migrate=True)
    store.upsert_papers([Paper(title=title or f"SciFact {doc_id}", abstract=abstract, source="scifact",
                               doi=f"10.5555/scifact.{doc_id}") for doc_id, (title, abstract) in docs.items()])
    store.sync_fulltext()
    return store


@contextmanager
def stopwords(which: str):
    """What-if: the index with FTS5's own stopword list instead of the extended one."""
    saved = lexical.STOPWORDS
    lexical.STOPWORDS = lexical.FTS_STOPWORDS if which == "fts5" else saved
    try:
        yield
    finally:
        lexical.STOPWORDS = saved


def run(search, queries: list, doc_of: dict) -> list[list[str]]:
    return [[doc_of[pid] for pid, _ in search(text)] for _, text, _ in queries]


def grid_runs(texts: list, queries: list, doc_of: dict) -> dict[tuple, list[list[str]]]:
    runs = {}
    for words in GRID["stopwords"]:
        with stopwords(words):
            for tw in GRID["title_weight"]:
                seg = build_segment(texts, weights=(tw, lexical.ABSTRACT_WEIGHT, lexical.AUTHOR_WEIGHT))
                for k1 in GRID["k1"]:
                    for b in GRID["b"]:
                        index = LexicalIndex(seg, k1=k1, b=b)
                        runs[(k1, b, tw, words)] = run(lambda q, index=index: index.search(q, 100), queries, doc_of)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "lexical_scifact.json"))
    args = ap.parse_args()
    docs, queries = load_scifact()
    tuning = tuning_ids(queries)
    tune_q = [q for q in queries if q[0] in tuning]
    print(f"{len(docs):,} abstracts, {len(queries)} claims: {len(tune_q)} tuning, {len(queries) - len(tune_q)} held out",
          flush=True)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="papersift-lexical-scifact-") as tmp:
        store = open_catalog(Path(tmp), docs)
        doc_of = {p.id: p.doi.rsplit(".", 1)[1] for p in store.iter_papers()}
        texts = [(pid, t, a, au) for pid, _, t, a, au in store.texts_since(0)]
        t = time.perf_counter()
        grid = grid_runs(texts, tune_q, doc_of)
        seconds["grid"] = round(time.perf_counter() - t, 1)
        default_key = (lexical.K1, lexical.B, lexical.TITLE_WEIGHT, "extended")
        tune_values = per_query(grid, [q[2] for q in tune_q], METRICS)
        ranked = sorted(grid, key=lambda key: -tune_values[key]["ndcg@10"].mean())
        best = ranked[0]
        versus = paired_bootstrap(tune_values[best]["ndcg@10"], tune_values[default_key]["ndcg@10"])
        index = LexicalIndex(build_segment(texts))
        runs = {"bm25": run(lambda q: index.search(q, 100), queries, doc_of),
                "bm25_fts5": run(lambda q: store.search_fulltext(q, 100), queries, doc_of)}
        if best != default_key:
            k1, b, tw, words = best
            with stopwords(words):
                tuned = LexicalIndex(build_segment(texts, weights=(tw, lexical.ABSTRACT_WEIGHT, lexical.AUTHOR_WEIGHT)),
                                     k1=k1, b=b)
                runs["bm25_grid_best"] = run(lambda q: tuned.search(q, 100), queries, doc_of)
    result: dict = {"protocol": "SciFact train claims (../shared/data/README.md, protocol 1)",
                    "documents": len(docs), "queries": len(queries), "tuning_split": str(TUNING_IDS.relative_to(ROOT)),
                    "defaults": {"k1": lexical.K1, "b": lexical.B, "field_weights": list(lexical.FIELD_WEIGHTS),
                                 "stopwords": "extended"},
                    "tuning": {"queries": len(tune_q), "grid": {k: list(v) for k, v in GRID.items()},
                               "top5": [{"k1": k[0], "b": k[1], "title_weight": k[2], "stopwords": k[3],
                                         "ndcg@10": round(float(tune_values[k]["ndcg@10"].mean()), 4)} for k in ranked[:5]],
                               "default_ndcg@10": round(float(tune_values[default_key]["ndcg@10"].mean()), 4),
                               "default_with_fts5_stopwords_ndcg@10":
                                   round(float(tune_values[(*default_key[:3], "fts5")]["ndcg@10"].mean()), 4),
                               "default_rank_of": [ranked.index(default_key) + 1, len(ranked)],
                               "best_minus_default": versus}}
    for label in ("held_out", "all"):
        rows = [i for i, q in enumerate(queries) if label == "all" or q[0] not in tuning]
        values = per_query({name: [r[i] for i in rows] for name, r in runs.items()}, [queries[i][2] for i in rows], METRICS)
        result[label] = {"queries": len(rows), "systems": summary(values),
                         "bm25_minus_fts5": {m: paired_bootstrap(values["bm25"][m], values["bm25_fts5"][m]) for m in METRICS}}
        print_table(f"{label} ({len(rows)} claims)", result[label]["systems"])
    result["seconds"] = seconds
    write_result(args.out, result)
    print(f"tuning: best {best} vs default {default_key}: {versus}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
