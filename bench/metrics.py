"""Shared helpers for the quality benchmarks: ranking metrics, bootstrap CIs, and result files.

    from metrics import ndcg_at, recall_at, mrr, bootstrap_ci, paired_bootstrap, write_result

Every metric takes one ranked list (ids, best first) and the set of relevant ids, and returns a float
for that one query; the benchmarks average them over queries and attach a 95 % bootstrap CI of the
mean (`bootstrap_ci`). `paired_bootstrap(a, b)` resamples queries jointly for two systems' per-query
values: the mean of a - b and its CI (a CI that excludes 0 is a difference the queries support).
`write_result` writes the JSON with the load average at import and at write time and the seconds
elapsed, so every result file says how busy the (shared) machine was while it was measured.

Bench-only: nothing in papersift/ imports this.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

_STARTED = time.perf_counter()


def loadavg() -> list[str]:
    try:
        return Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        return []


_LOAD_AT_START = loadavg()


# -- per-query metrics ---------------------------------------------------------------------------

def ndcg_at(ranked: Sequence, relevant: set, k: int = 10) -> float:
    """Binary-relevance nDCG@k (log2 discount); 0 when nothing is relevant."""
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: Sequence, relevant: set, k: int) -> float:
    """Share of the relevant ids found in the top k (duplicates in `ranked` count once)."""
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def mrr(ranked: Sequence, relevant: set, k: int | None = None) -> float:
    """Reciprocal rank of the first relevant id within the top k (the whole list when k is None)."""
    for i, d in enumerate(ranked[:k] if k else ranked):
        if d in relevant:
            return 1.0 / (i + 1)
    return 0.0


METRICS: dict[str, Callable[[Sequence, set], float]] = {
    "ndcg@10": lambda r, rel: ndcg_at(r, rel, 10),
    "recall@10": lambda r, rel: recall_at(r, rel, 10),
    "recall@20": lambda r, rel: recall_at(r, rel, 20),
    "recall@50": lambda r, rel: recall_at(r, rel, 50),
    "recall@100": lambda r, rel: recall_at(r, rel, 100),
    "mrr": mrr,
}


# -- bootstrap -----------------------------------------------------------------------------------

def bootstrap_ci(values, n: int = 2000, seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap CI of the mean of `values` (resampling queries)."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


def paired_bootstrap(a, b, n: int = 2000, seed: int = 0) -> dict:
    """Mean of a - b over the same queries, its 95 % CI, and the share of resamples where a ≤ b."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return {"mean_diff": round(float(diff.mean()), 4), "ci95": bootstrap_ci(diff, n, seed),
            "share_resamples_a_not_better": round(float((means <= 0).mean()), 4)}


# -- tables --------------------------------------------------------------------------------------

def per_query(runs: dict[str, list[list]], relevant: list[set], metrics: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """{system: {metric: per-query values}} for ranked lists aligned with `relevant`."""
    return {name: {m: np.array([METRICS[m](r, rel) for r, rel in zip(ranked, relevant)]) for m in metrics}
            for name, ranked in runs.items()}


def summary(values: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """{system: {metric: mean, metric_ci95: [lo, hi]}}."""
    table: dict[str, dict] = {}
    for name, by_metric in values.items():
        row: dict = {}
        for metric, v in by_metric.items():
            row[metric] = round(float(v.mean()), 4)
            row[metric + "_ci95"] = bootstrap_ci(v)
        table[name] = row
    return table


def versus_best(values: dict[str, dict[str, np.ndarray]], system: str, baselines: Sequence[str]) -> dict[str, dict]:
    """Per metric: `system` minus the baseline with the best mean on that metric (paired bootstrap)."""
    out = {}
    for metric in values[system]:
        present = [b for b in baselines if b in values]
        best = max(present, key=lambda b: values[b][metric].mean())
        out[metric] = {"baseline": best, **paired_bootstrap(values[system][metric], values[best][metric])}
    return out


def print_table(title: str, table: dict[str, dict]) -> None:
    print(title, flush=True)
    for name, row in table.items():
        cells = "  ".join(f"{m} {row[m]:.4f} {row[m + '_ci95']}" for m in row if not m.endswith("_ci95"))
        print(f"  {name:<10} {cells}", flush=True)


# -- timing and result files ---------------------------------------------------------------------

@contextmanager
def timed(seconds: dict, key: str) -> Iterator[None]:
    """Adds the wall-clock seconds of the block to seconds[key]."""
    t = time.perf_counter()
    try:
        yield
    finally:
        seconds[key] = round(seconds.get(key, 0.0) + time.perf_counter() - t, 2)


def write_result(path: str | Path, result: dict) -> dict:
    """Write `result` as JSON with the machine's load average and the run's timing added; returns it."""
    out = dict(result)
    out["machine"] = {**out.get("machine", {}), "cpus": os.cpu_count(), "loadavg_at_start": _LOAD_AT_START,
                      "loadavg_at_end": loadavg()}
    out["seconds"] = {**out.get("seconds", {}), "total": round(time.perf_counter() - _STARTED, 1)}
    out["written_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return out
