"""The static embedding tier (papersift/index/static.py) against MiniLM int8, on real data, in one run.

    .venv/bin/python bench/static_tier.py [--out bench/results/static_tier.json] [--minilm-threads 1]

- distillation time (one onnxruntime thread), split into the ONNX graph build, the model run over the
  vocabulary and the PCA/weighting/save;
- throughput (abstracts/s) on 2,000 seeded arxiv-daily papers, text = title + ". " + abstract:
  StaticEmbedder cold (fresh word memo) and warm (Python on one core; the tokenizers library's own
  thread pool for batches of new words and non-ASCII texts), the `tokenizers` library alone (all
  cores), and MiniLMEmbedder int8 with 256 tokens on --minilm-threads threads (default 1);
- agreement with MiniLM on those 2,000: Spearman/Pearson correlation of all pairwise cosines, and the
  mean overlap of each paper's 10 nearest neighbours;
- quality: SciFact nDCG@10 / Recall@100 of dense retrieval (../shared/data/README.md protocol 1) and
  the arXiv proxy (protocol 7): leave-one-out k=10 kNN accuracy on the primary category, categories
  with >= 200 papers in a seeded 10,000-paper sample; 95 % bootstrap CIs;
- static dims 128 / 256 / 384, and recipe variants: [CLS] token [SEP] (the token's own output
  position, or the mean of the three) and an fp32 graph instead of int8.

MiniLM embeds ~17,000 texts here: ~15 minutes on one core. Run it alone on the machine; the JSON
records the load average around it.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARXIV = ROOT.parent / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from search_scifact import bootstrap_ci, load_scifact, ndcg_at_10, recall_at  # noqa: E402

from papersift.index import onnx_minilm, static  # noqa: E402
from papersift.index.embed import MiniLMEmbedder  # noqa: E402
from papersift.index.static import StaticEmbedder  # noqa: E402

TAXONOMY = re.compile(r"^[a-z-]+\.[A-Za-z-]+$")
SEED = 0
# Written from this script's last run (bench/results/static_tier.json): re-read "dims" when re-running.
DEFAULT_WHY = ("256: 384 adds +0.005 SciFact nDCG@10 (inside the CI) and no kNN accuracy for a 1.5x table and "
               "~26% lower throughput; 128 loses 0.056 nDCG@10")


def load_arxiv() -> list[tuple[str, str]]:
    """(title + ". " + abstract, primary arXiv category) of every paper with an abstract."""
    papers = []
    with gzip.open(ARXIV, "rt", encoding="utf-8") as f:
        for line in f:
            p = json.loads(line)
            categories = [c for c in p.get("categories") or [] if TAXONOMY.match(c)]
            if p.get("abstract") and categories:
                papers.append((f"{p['title']}. {p['abstract']}", categories[0]))
    return papers


def knn_sample(papers: list[tuple[str, str]], size: int = 10_000, min_count: int = 200) -> list[tuple[str, str]]:
    rng = np.random.default_rng(SEED)
    sample = [papers[i] for i in rng.choice(len(papers), size, replace=False)]
    counts = Counter(category for _, category in sample)
    return [(text, category) for text, category in sample if counts[category] >= min_count]


def knn_correct(vectors: np.ndarray, labels: list[str], k: int = 10) -> np.ndarray:
    """Per paper, 1.0 when the majority of its k nearest others (ties: higher summed cosine) share its label."""
    classes, y = np.unique(np.array(labels), return_inverse=True)
    correct = np.zeros(len(vectors))
    for start in range(0, len(vectors), 1000):
        sims = vectors[start:start + 1000] @ vectors.T
        sims[np.arange(len(sims)), np.arange(start, start + len(sims))] = -np.inf
        nearest = np.argpartition(-sims, k, axis=1)[:, :k]
        for i, row in enumerate(nearest):
            votes = np.bincount(y[row], minlength=len(classes)) + 1e-3 * np.bincount(y[row], sims[i, row], len(classes))
            correct[start + i] = votes.argmax() == y[start + i]
    return correct


def scifact_scores(embed, docs: dict, queries: list) -> dict:
    doc_ids = list(docs)
    doc_vectors = embed([f"{title}. {abstract}" if abstract else title for title, abstract in docs.values()])
    query_vectors = embed([text for _, text, _ in queries])
    top = np.argsort(-(query_vectors @ doc_vectors.T), axis=1)[:, :100]
    ranked = [[doc_ids[j] for j in row] for row in top]
    ndcg = np.array([ndcg_at_10(r, q[2]) for r, q in zip(ranked, queries)])
    recall = np.array([recall_at(r, q[2], 100) for r, q in zip(ranked, queries)])
    return {"ndcg@10": round(float(ndcg.mean()), 4), "ndcg@10_ci95": bootstrap_ci(ndcg),
            "recall@100": round(float(recall.mean()), 4), "recall@100_ci95": bootstrap_ci(recall)}


def quality(embed, scifact: tuple, knn: list[tuple[str, str]]) -> dict:
    correct = knn_correct(embed([text for text, _ in knn]), [category for _, category in knn])
    return {"scifact": scifact_scores(embed, *scifact),
            "arxiv_knn10_accuracy": round(float(correct.mean()), 4), "arxiv_knn10_ci95": bootstrap_ci(correct)}


def per_second(embed, texts: list[str], repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        embed(texts)
        best = min(best, time.perf_counter() - started)
    return round(len(texts) / best, 1)


def agreement(ours: np.ndarray, minilm: np.ndarray, k: int = 10) -> dict:
    """How far the static space keeps MiniLM's geometry: the two spaces differ, so compare similarities."""
    pairs = np.triu_indices(len(ours), 1)
    a, b = (ours @ ours.T), (minilm @ minilm.T)
    ranks = [np.argsort(np.argsort(x[pairs])) for x in (a, b)]
    np.fill_diagonal(a, -np.inf)
    np.fill_diagonal(b, -np.inf)
    near_a, near_b = np.argpartition(-a, k, axis=1)[:, :k], np.argpartition(-b, k, axis=1)[:, :k]
    overlap = np.mean([len(set(x) & set(y)) / k for x, y in zip(near_a, near_b)])
    return {"pairwise_cosine_spearman": round(float(np.corrcoef(*ranks)[0, 1]), 4),
            "pairwise_cosine_pearson": round(float(np.corrcoef(a[pairs], b[pairs])[0, 1]), 4),
            "neighbour_overlap@10": round(float(overlap), 4)}


def cls_first_states(model_dir: Path, cache_dir: Path) -> dict[str, dict]:
    """The two [CLS] token [SEP] variants from one model run: the token's own output, and the mean."""
    tokens = static.read_vocab(model_dir)
    token_ids = static.content_token_ids(tokens)
    session, hidden = static.open_hidden_session(cache_dir, model_dir, "int8", 1)
    cls_id, sep_id = tokens.index("[CLS]"), tokens.index("[SEP]")
    n = len(token_ids)
    sequences = np.stack([np.full(n, cls_id), token_ids, np.full(n, sep_id)], axis=1).astype(np.int64)
    outputs = np.concatenate([session.run([hidden], {"input_ids": b, "attention_mask": np.ones_like(b)})[0]
                              for b in np.array_split(sequences, max(1, n // static.FORWARD_BATCH))])
    empty = static.run_states(session, hidden, np.array([[cls_id, sep_id]], np.int64))[0]
    base = {"token_ids": token_ids, "empty": empty, "vocab_size": len(tokens), "precision": "int8"}
    return {"cls_first_token_position": {**base, "states": outputs[:, 1], "pooling": "[CLS] token [SEP], position 1"},
            "cls_first_mean": {**base, "states": outputs.mean(axis=1), "pooling": "mean of [CLS] token [SEP]"}}


def static_embedder(folder: Path, model_dir: Path, states: dict, dim: int) -> StaticEmbedder:
    """A StaticEmbedder over a table made from `states`, in a folder of its own."""
    static.distill(model_dir, static.table_path(folder, model_dir, dim), dim, states=states)
    embedder = StaticEmbedder(folder, dim=dim, threads=1, model_dir=model_dir)
    embedder.load()
    return embedder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "static_tier.json"))
    ap.add_argument("--minilm-threads", type=int, default=1)
    ap.add_argument("--smoke", action="store_true", help="a tenth of the data, to check the script runs (figures meaningless)")
    args = ap.parse_args()
    if args.smoke and args.out == ap.get_default("out"):
        ap.error("--smoke needs its own --out: it must not overwrite the real results")
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    model_dir = onnx_minilm.find_model_dir()
    papers = load_arxiv()
    rng = np.random.default_rng(SEED + 1)
    speed_texts = [papers[i][0] for i in rng.choice(len(papers), 2000, replace=False)]
    knn = knn_sample(papers)
    scifact = load_scifact()
    if args.smoke:
        speed_texts, knn, scifact = speed_texts[:200], knn[:1000], (scifact[0], scifact[1][:80])
    print(f"{len(papers):,} arXiv papers; kNN sample {len(knn):,} in {len(set(c for _, c in knn))} categories; "
          f"SciFact {len(scifact[0]):,} abstracts, {len(scifact[1])} claims", flush=True)
    results: dict = {"what": __doc__.split("\n\n")[0], "seed": SEED}
    with tempfile.TemporaryDirectory(prefix="papersift-static-") as tmp:
        tmp = Path(tmp)
        models = tmp / "models"
        t = time.perf_counter()
        onnx_minilm.ensure_model(models, static.DISTILL_PRECISION, model_dir)
        graph_seconds = time.perf_counter() - t
        t = time.perf_counter()
        states = static.distill_states(model_dir, models, threads=1)
        states_seconds = time.perf_counter() - t
        t = time.perf_counter()
        static.distill(model_dir, static.table_path(models, model_dir, static.DEFAULT_DIM), states=states)
        table_seconds = time.perf_counter() - t
        results["distillation"] = {
            "threads": 1, "precision": static.DISTILL_PRECISION, "tokens": len(states["token_ids"]),
            "onnx_graph_build_s": round(graph_seconds, 1), "model_run_s": round(states_seconds, 1),
            "pca_weight_save_s": round(table_seconds, 1), "total_s": round(states_seconds + table_seconds, 1),
            "note": "first use in a fresh models folder costs graph build + total; MiniLM users have the graph already"}
        print("distillation", results["distillation"], flush=True)

        # Throughput: a fresh embedder per measurement, the table already loaded (as after the first use).
        embedder = StaticEmbedder(models, threads=1, model_dir=model_dir)
        embedder.load()
        cold = per_second(embedder.embed, speed_texts)
        warm = per_second(embedder.embed, speed_texts, repeats=3)
        tokenizer = static.WordPieceIds(model_dir).tokenizer
        tokenizer_only = per_second(lambda ts: tokenizer.encode_batch(ts, add_special_tokens=False), speed_texts, 3)
        ours = embedder.embed(speed_texts)
        mean_tokens = np.mean([len(e.ids) for e in tokenizer.encode_batch(speed_texts, add_special_tokens=False)])
        minilm = MiniLMEmbedder(models, precision="int8", max_tokens=256, threads=args.minilm_threads)
        minilm.load()
        t = time.perf_counter()
        theirs = minilm.embed(speed_texts)
        minilm_rate = round(len(speed_texts) / (time.perf_counter() - t), 1)
        results["throughput"] = {
            "texts": len(speed_texts), "unit": "abstracts/s",
            "static_d256_cold": cold, "static_d256_warm": warm, "tokenizers_library_alone_all_cores": tokenizer_only,
            "minilm_int8_tok256": minilm_rate, "minilm_threads": args.minilm_threads,
            "speedup_cold_vs_minilm": round(cold / minilm_rate, 1),
            "mean_tokens": round(float(mean_tokens), 1)}
        print("throughput", results["throughput"], flush=True)
        results["agreement_with_minilm"] = agreement(ours, theirs)
        print("agreement", results["agreement_with_minilm"], flush=True)

        results["quality"] = {"static_d256": quality(embedder.embed, scifact, knn)}
        print("static", results["quality"]["static_d256"], flush=True)
        results["quality"]["minilm_int8_tok256"] = quality(minilm.embed, scifact, knn)
        print("minilm", results["quality"]["minilm_int8_tok256"], flush=True)
        minilm.close()

        results["dims"] = {}
        for dim in (128, 256, 384):
            other = static_embedder(tmp / f"d{dim}", model_dir, states, dim) if dim != 256 else embedder
            results["dims"][str(dim)] = {**quality(other.embed, scifact, knn),
                                         "warm_per_second": per_second(other.embed, speed_texts, repeats=3),
                                         "table_mb": round(other._table.nbytes / 2**20, 1)}
            print("dim", dim, results["dims"][str(dim)], flush=True)

        variants = cls_first_states(model_dir, models)
        t = time.perf_counter()
        variants["fp32_graph"] = static.distill_states(model_dir, models, precision="fp32", threads=1)
        fp32_seconds = time.perf_counter() - t
        results["recipe_variants"] = {"shipped (int8, mean of [SEP] token [CLS])": {
            key: results["quality"]["static_d256"][key] for key in ("scifact", "arxiv_knn10_accuracy")}}
        for name, variant in variants.items():
            other = static_embedder(tmp / name, model_dir, variant, 256)
            results["recipe_variants"][name] = {key: value for key, value in quality(other.embed, scifact, knn).items()
                                                if not key.endswith("ci95")}
            print("variant", name, results["recipe_variants"][name], flush=True)
        results["recipe_variants"]["fp32_graph"]["model_run_s"] = round(fp32_seconds, 1)

    results["default"] = {"dim": static.DEFAULT_DIM, "sif_coefficient": static.SIF_COEFFICIENT,
                          "precision": static.DISTILL_PRECISION, "why": DEFAULT_WHY}
    results["machine"] = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "loadavg_before": load_before, "loadavg_after": Path("/proc/loadavg").read_text().split()[:3]}
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
