"""Embedding speed and int8 quality: all-MiniLM-L6-v2 on ONNX Runtime, fp32 and int8, 128 and 256 tokens.

    .venv/bin/python bench/embed_speed.py [--n 512] [--out bench/results/embed_speed.json]

Texts: the first N arxiv-daily papers with an abstract, as title + ". " + abstract (what the index embeds).
For each precision × max_tokens:
  shipped   MiniLMEmbedder as papersift runs it: one unpadded text per run, one run per core at once
  padded32  the usual way, for comparison: sorted by length, padded batches of 32, all cores inside
            each run; for int8 its cosine to `shipped` shows how much a text's vector moves with
            its batch-mates (dynamic quantization scales activations per run)
Quality: cosine of int8 to fp32 per paper (mean, min, 1st percentile). Baseline, when installed:
sentence-transformers' encode (torch CPU) of the same model, batch 32, 256 tokens: speed and cosine to
ours. The models are built into a fresh temp folder, so the build time is measured too.
The machine is shared: the runners take turns on the same slices of texts (rotating order), so other
jobs slow them alike, and /proc/loadavg before, during and after says what else was running. Compare
figures within one run; `best_slice_per_second` is the least disturbed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from papersift.index import onnx_minilm
from papersift.index.embed import MiniLMEmbedder

ROOT = Path(__file__).resolve().parents[1]
ARXIV_DAILY = ROOT.parent / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"


def load_texts(n: int) -> list[str]:
    texts = []
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if record.get("abstract"):
                texts.append(f"{record['title']}. {record['abstract']}")
            if len(texts) == n:
                break
    return texts


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


class PaddedBatches:
    """The conventional runner: length-sorted, padded batches of 32, every core inside one run."""

    def __init__(self, embedder: MiniLMEmbedder, batch_size: int = 32):
        import onnxruntime as ort

        embedder.load()
        options = ort.SessionOptions()
        options.intra_op_num_threads = embedder.threads
        options.log_severity_level = 3
        path = onnx_minilm.ensure_model(embedder.cache_dir, embedder.precision)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.embedder, self.batch_size = embedder, batch_size

    def __call__(self, texts: list[str]) -> np.ndarray:
        ids = [e.ids for e in self.embedder._tokenizer.encode_batch(texts)]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(texts), self.embedder.dim), np.float32)
        for b in range(0, len(order), self.batch_size):
            rows = order[b:b + self.batch_size]
            width = max(len(ids[i]) for i in rows)
            input_ids, mask = np.zeros((len(rows), width), np.int64), np.zeros((len(rows), width), np.int64)
            for r, i in enumerate(rows):
                input_ids[r, :len(ids[i])], mask[r, :len(ids[i])] = ids[i], 1
            out[rows] = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        return out


def cosine_stats(a: np.ndarray, b: np.ndarray) -> dict:
    sims = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"mean": round(float(sims.mean()), 5), "min": round(float(sims.min()), 5),
            "p01": round(float(np.percentile(sims, 1)), 5)}


def sentence_transformers_runner(model_dir: Path, threads: int):
    """sentence-transformers' encode of the same folder on torch CPU, or None when not installed."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None, "sentence-transformers / torch not installed"
    torch.set_num_threads(threads)
    model = SentenceTransformer(str(model_dir), device="cpu")
    model.max_seq_length = 256
    version = sys.modules["sentence_transformers"].__version__
    label = f"sentence-transformers {version}, torch {torch.__version__}, {threads} threads, batch 32"
    return (lambda t: np.asarray(model.encode(t, batch_size=32, normalize_embeddings=True,
                                              show_progress_bar=False), np.float32)), label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "embed_speed.json"))
    parser.add_argument("--slice", type=int, default=128, help="texts per interleaved slice")
    parser.add_argument("--no-baseline", action="store_true", help="skip sentence-transformers")
    args = parser.parse_args()

    import onnxruntime
    import tokenizers

    load_before = loadavg()
    texts = load_texts(args.n)
    model_dir = onnx_minilm.find_model_dir()
    result = {
        "what": "all-MiniLM-L6-v2 embedding speed (abstracts/s) and int8-vs-fp32 cosine",
        "texts": f"first {len(texts)} arxiv-daily papers with an abstract, title + '. ' + abstract",
        "machine": {"cpu_count": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
                    "cpu": cpu_model(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": {"onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__, "builder": onnx_minilm.BUILDER_VERSION},
        "method": "each runner embeds the same slices, interleaved in rotating order (see the docstring)",
        "runs": [], "quality": {}, "build_seconds": {},
    }
    with tempfile.TemporaryDirectory(prefix="papersift-models-") as cache:
        for precision in ("fp32", "int8"):  # int8 quantizes the cached fp32 graph
            started = time.perf_counter()
            path = onnx_minilm.ensure_model(cache, precision, model_dir)
            result["build_seconds"][precision] = round(time.perf_counter() - started, 2)
            result[f"model_bytes_{precision}"] = path.stat().st_size
        runners, lengths = {}, {}
        for max_tokens in (128, 256):
            for precision in ("fp32", "int8"):
                embedder = MiniLMEmbedder(cache, precision=precision, max_tokens=max_tokens)
                embedder.load()
                lengths[max_tokens] = [len(e.ids) for e in embedder._tokenizer.encode_batch(texts)]
                runners[(precision, max_tokens, "shipped")] = embedder.embed
                runners[(precision, max_tokens, "padded32")] = PaddedBatches(embedder)
        if not args.no_baseline:
            st, result["baseline"] = sentence_transformers_runner(model_dir, len(os.sched_getaffinity(0)))
            if st is not None:
                runners[("fp32", 256, "sentence-transformers")] = st
        else:
            result["baseline"] = "skipped (--no-baseline)"

        # Interleaved: every runner embeds slice 1, then every runner slice 2 …, in a rotating order, so
        # other jobs on the machine slow all runners alike. Each runner warms up on 8 texts first.
        keys = list(runners)
        for key in keys:
            runners[key](texts[:8])
        slices = [texts[i:i + args.slice] for i in range(0, len(texts), args.slice)]
        seconds = {key: [] for key in keys}
        parts = {key: [] for key in keys}
        load_during = []
        for n, part in enumerate(slices):
            for key in keys[n % len(keys):] + keys[:n % len(keys)]:
                started = time.perf_counter()
                parts[key].append(runners[key](part))
                seconds[key].append(time.perf_counter() - started)
            load_during.append(loadavg())
            print(f"slice {n + 1}/{len(slices)} done, loadavg {load_during[-1]}", flush=True)
        vectors = {key: np.concatenate(parts[key]) for key in keys}
        for (precision, max_tokens, runner), secs in seconds.items():
            rates = [len(part) / s for part, s in zip(slices, secs)]
            result["runs"].append({
                "precision": precision, "max_tokens": max_tokens, "runner": runner,
                "seconds": round(sum(secs), 2), "per_second": round(len(texts) / sum(secs), 1),
                "per_second_by_slice": [round(r, 1) for r in rates],
                "best_slice_per_second": round(max(rates), 1),
                "mean_tokens": round(float(np.mean(lengths[max_tokens])), 1),
                "truncated_share": round(float(np.mean(np.array(lengths[max_tokens]) >= max_tokens)), 3),
            })
            print(json.dumps(result["runs"][-1]), flush=True)

    for max_tokens in (128, 256):
        result["quality"][f"tok{max_tokens}"] = {
            "int8_vs_fp32": cosine_stats(vectors[("int8", max_tokens, "shipped")],
                                         vectors[("fp32", max_tokens, "shipped")]),
            "int8_padded32_vs_int8_alone": cosine_stats(vectors[("int8", max_tokens, "padded32")],
                                                        vectors[("int8", max_tokens, "shipped")]),
            "fp32_padded32_vs_fp32_alone": cosine_stats(vectors[("fp32", max_tokens, "padded32")],
                                                        vectors[("fp32", max_tokens, "shipped")]),
        }
    result["quality"]["fp32_tok128_vs_tok256"] = cosine_stats(vectors[("fp32", 128, "shipped")],
                                                              vectors[("fp32", 256, "shipped")])
    if ("fp32", 256, "sentence-transformers") in vectors:
        st = vectors[("fp32", 256, "sentence-transformers")]
        result["quality"]["sentence_transformers_vs_ours"] = {
            "fp32": cosine_stats(st, vectors[("fp32", 256, "shipped")]),
            "int8": cosine_stats(st, vectors[("int8", 256, "shipped")])}
    print(json.dumps(result["quality"], indent=1), flush=True)

    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["load"] = {"loadavg_before": load_before, "loadavg_after_each_slice": load_during,
                      "loadavg_after": loadavg(),
                      "note": "1/5/15-minute load averages of the whole machine; above ~0.5 before, "
                              "other jobs shared the cores and absolute speeds are low"}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
