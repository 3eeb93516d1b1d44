"""Personal recommendations on CiteULike-a (protocols 5 and 6 of ../shared/data/README.md), every system
in one run, with papersift's default (rank/recommend.py) side by side with the baselines.

    .venv/bin/python bench/recommend_citeulike.py            # the measured run → bench/results/recommend_citeulike.json
    .venv/bin/python bench/recommend_citeulike.py --tune     # validation grids only (kept in the same JSON)

Warm (5): per reader a seeded 80/20 hold-out of the library; every paper outside the reader's training
part is ranked. Recall@20/50/100, nDCG@10.
Cold start (6): a seeded 20 % of the papers are new: all their interactions leave the training data;
each reader who holds some gets only those papers ranked, from titles and the training library.
Recall@20/50, nDCG@10. Content is titles only (MiniLM int8, papersift's default embedder; no tags).

Splits: seed 0 for the test splits; validation splits are carved from the training part only, the same
way with seed 1 (warm: 80/20 of each reader's training part; cold: 20 % of the non-new papers). They
are written to bench/results/work/recommend_splits/ and their sha256 recorded. Every constant of the
default and of the tuned baselines was chosen on the validation splits (`--tune`), never on the test
hold-out; the test figures are computed once, with the constants below.

Systems: random, popularity, TF-IDF + linear SVM per reader (arxiv-sanity-lite: 1–2-gram sublinear
TF-IDF, LinearSVC C = 0.01, balanced classes; every reader, ≈ 5 min a split here), BM25 of the reader's titles, MiniLM profile
(mean; mean of the top-3 similarities), item-kNN (cosine, no cut-off), RP3beta, GF-CF (a training-free
LightGCN-style graph filter: normalised item-item + ideal low-pass), implicit ALS, plain EASE, the
simple blend of measured.md, and the default. Mean over readers with 95 % bootstrap CIs; a paired
bootstrap of the default against the best baseline per metric. Timings: full refresh (fit + top-100
for all 5,551 readers), feed p50 of one reader (one BLAS thread, as a web worker, and unrestricted).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "citeulike-a"
WORK = ROOT / "bench" / "results" / "work"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from metrics import bootstrap_ci, paired_bootstrap, write_result  # noqa: E402
from related_citeulike import clean_title  # noqa: E402

from papersift.rank.recommend import Library, Recommender  # noqa: E402

SEED, VALID_SEED = 0, 1
WARM_METRICS = ("recall@20", "recall@50", "recall@100", "ndcg@10")
COLD_METRICS = ("recall@20", "recall@50", "ndcg@10")
TOP = 100
# chosen on the validation splits (--tune; the grids and their figures are in the JSON's "tuning")
EASE_L2 = 50.0
RP3_BETA = 0.25
GFCF_ALPHA = 0.3
ALS = dict(factors=128, regularization=1.0, alpha=10.0, iterations=30)  # measured.md's setting
BLEND_WARM = {"als": 1.0, "itemknn": 0.5, "dense_top3": 0.5, "bm25": 0.1}  # measured.md's z-score blend
BLEND_COLD = ("dense_top3", "dense_mean", "tfidf_svm")  # measured.md's RRF (its weights unpublished: equal, k = 60)


# -- data and splits -----------------------------------------------------------------------------

def load() -> tuple[list[str], list[np.ndarray]]:
    titles = [clean_title(t) for t in (DATA / "titles.txt").read_text(encoding="utf-8", errors="replace").splitlines()]
    users = [np.array(sorted(map(int, line.split()[1:])), np.int64) for line in (DATA / "users.dat").read_text().splitlines()]
    return titles, users


def wait_quiet() -> None:
    """Someone may be timing a benchmark on this shared machine: wait while /tmp/papersift-quiet exists."""
    while Path("/tmp/papersift-quiet").exists():
        time.sleep(30)


def embeddings(titles: list[str]) -> np.ndarray:
    path = WORK / "citeulike_minilm.npy"
    if path.exists():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape[0] == len(titles):
            return vectors
    from papersift.index.embed import create_embedder

    wait_quiet()
    vectors = create_embedder("minilm", WORK / "models").embed(titles)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors, allow_pickle=False)
    return vectors


def warm_split(users: list[np.ndarray], seed: int, share: float = 0.2):
    """Per reader, round(share · n) of the library (at least 1) held out, by one seeded generator."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for items in users:
        perm = rng.permutation(items)
        n = max(1, int(round(share * len(items)))) if len(items) > 1 else 0
        test.append(np.sort(perm[:n]))
        train.append(np.sort(perm[n:]))
    return train, test


def cold_split(users: list[np.ndarray], pool: np.ndarray, seed: int, share: float = 0.2):
    """round(share · |pool|) papers of `pool` become new: out of every training library, into the test."""
    cold = np.sort(np.random.default_rng(seed).permutation(pool)[: int(round(share * len(pool)))])
    is_cold = np.zeros(int(max(pool.max(), max(u.max() for u in users if len(u))) + 1), bool)
    is_cold[cold] = True
    return cold, [u[~is_cold[u]] for u in users], [u[is_cold[u]] for u in users]


def save_splits(splits: dict[str, list[np.ndarray] | np.ndarray]) -> dict[str, str]:
    """Write each split as .npy (ragged lists as indptr + indices) and return their sha256."""
    folder = WORK / "recommend_splits"
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, value in splits.items():
        if isinstance(value, list):
            indptr = np.concatenate([[0], np.cumsum([len(v) for v in value])]).astype(np.int64)
            arrays = {"indptr": indptr, "indices": np.concatenate(value).astype(np.int64)}
        else:
            arrays = {"items": np.asarray(value, np.int64)}
        h = hashlib.sha256()
        for part, arr in arrays.items():
            np.save(folder / f"{name}.{part}.npy", arr, allow_pickle=False)
            h.update(arr.tobytes())
        digests[name] = h.hexdigest()
    return digests


def csr(lists: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    indptr = np.concatenate([[0], np.cumsum([len(x) for x in lists])])
    idx = np.concatenate(lists)
    return sp.csr_matrix((np.ones(len(idx), np.float32), idx, indptr), shape=(len(lists), n_items))


# -- evaluation ----------------------------------------------------------------------------------

class Task:
    """One split: training libraries, held-out sets, the readers evaluated and the candidate items."""

    def __init__(self, name: str, train, test, n_items: int, candidates: np.ndarray | None = None):
        self.name, self.train, self.test, self.n_items = name, train, test, n_items
        self.users = np.array([u for u in range(len(test)) if len(test[u])])
        self.candidates = candidates
        self.blocked = None
        if candidates is not None:
            self.blocked = np.ones(n_items, bool)
            self.blocked[candidates] = False
        self.X = csr(train, n_items)
        self.k = TOP if candidates is None else min(TOP, len(candidates))

    def rank(self, scores_fn, block: int = 512) -> np.ndarray:
        """Top-k item ids (len(users) × k) from scores_fn(user ids) → (b × n_items) scores."""
        out = np.zeros((len(self.users), self.k), np.int64)
        for s in range(0, len(self.users), block):
            ub = self.users[s:s + block]
            S = np.array(scores_fn(ub), np.float32, copy=True)
            if self.blocked is not None:
                S[:, self.blocked] = -np.inf
            for r, u in enumerate(ub):
                S[r, self.train[u]] = -np.inf
            part = np.argpartition(-S, self.k - 1, axis=1)[:, :self.k]
            vals = np.take_along_axis(S, part, 1)
            out[s:s + len(ub)] = np.take_along_axis(part, np.lexsort((part, -vals), axis=1), 1)
        return out

    def metrics(self, top: np.ndarray, names) -> dict[str, np.ndarray]:
        disc = 1 / np.log2(np.arange(2, 12))
        res = {m: np.zeros(len(self.users)) for m in names}
        for r, u in enumerate(self.users):
            rel = self.test[u]
            hit = np.isin(top[r], rel)
            for m in names:
                if m.startswith("recall@"):
                    res[m][r] = hit[: int(m.split("@")[1])].sum() / len(rel)
            res["ndcg@10"][r] = (hit[:10] * disc).sum() / disc[: min(10, len(rel))].sum()
        return res


def summarise(values: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    table = {}
    for name, by_metric in values.items():
        row = {}
        for m, v in by_metric.items():
            row[m] = round(float(v.mean()), 4)
            row[m + "_ci95"] = bootstrap_ci(v)
        table[name] = row
    return table


def versus_best(values, system: str, baselines) -> dict[str, dict]:
    out = {}
    for m in values[system]:
        best = max((b for b in baselines if b in values), key=lambda b: values[b][m].mean())
        out[m] = {"baseline": best, **paired_bootstrap(values[system][m], values[best][m])}
    return out


def zscore(S: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-row z-scores, statistics over the unmasked entries (the candidates)."""
    S = S.astype(np.float32, copy=True)
    M = S if mask is None else np.where(mask, S, np.nan)
    mu, sd = np.nanmean(M, 1, keepdims=True), np.nanstd(M, 1, keepdims=True)
    return (S - mu) / np.maximum(sd, 1e-9)


# -- baselines -----------------------------------------------------------------------------------

class Baselines:
    """Score functions for one task: each takes reader ids and returns (b × n_items) scores."""

    def __init__(self, task: Task, E: np.ndarray, tfidf, bm25w):
        self.t, self.E, self.tfidf, self.bm25w = task, E, tfidf, bm25w
        self.seconds: dict[str, float] = {}

    def random(self, ub):
        return np.random.default_rng([SEED, int(ub[0])]).random((len(ub), self.t.n_items))

    def popularity(self, ub):
        pop = np.asarray(self.t.X.sum(0)).ravel()
        return np.tile(pop, (len(ub), 1))

    def dense_mean(self, ub):
        prof = np.stack([self.E[self.t.train[u]].mean(0) if len(self.t.train[u]) else np.zeros(self.E.shape[1])
                         for u in ub]).astype(np.float32)
        return prof @ self.E.T

    def dense_top3(self, ub, k: int = 3):
        cols = self.t.candidates if self.t.candidates is not None else np.arange(self.t.n_items)
        Ec = self.E[cols]
        out = np.full((len(ub), self.t.n_items), -np.inf, np.float32)
        for r, u in enumerate(ub):
            lib = self.t.train[u]
            if not len(lib):
                out[r, cols] = 0
                continue
            sims = self.E[lib] @ Ec.T
            kk = min(k, len(lib))
            out[r, cols] = np.partition(sims, len(lib) - kk, axis=0)[-kk:].mean(0)
        return out

    def bm25(self, ub):
        Q = self.t.X[ub] @ self.tfidf["counts"]            # the reader's titles as one bag of words
        return np.asarray((Q @ self.bm25w.T).todense())

    def tfidf_svm(self, ub):
        from sklearn.svm import LinearSVC

        M = self.tfidf["tfidf"]  # as arxiv-sanity-lite: every paper not in the library is a negative
        out = np.zeros((len(ub), self.t.n_items), np.float32)
        for r, u in enumerate(ub):
            y = np.zeros(self.t.n_items)
            y[self.t.train[u]] = 1
            if y.sum() == 0:
                continue
            out[r] = LinearSVC(C=0.01, class_weight="balanced", max_iter=10000, tol=1e-4).fit(M, y).decision_function(M)
        return out

    def _dual(self, left: sp.spmatrix, right: sp.spmatrix):
        """Scores x W for an item-item W = left · right, computed as (x · left) · right per block."""
        def fn(ub):
            return np.asarray((self.t.X[ub] @ left @ right).todense())
        return fn

    def itemknn(self):
        X = self.t.X
        n = np.sqrt(np.asarray(X.sum(0)).ravel())
        Xn = X @ sp.diags(1 / np.maximum(n, 1e-9))
        return self._dual(Xn.T, Xn)            # x · cosine(item, item)

    def rp3beta(self, beta: float):
        X = self.t.X
        deg_i = np.asarray(X.sum(0)).ravel()
        deg_u = np.asarray(X.sum(1)).ravel()
        left = sp.diags(1 / np.maximum(deg_i, 1)) @ X.T    # item → reader
        right = sp.diags(1 / np.maximum(deg_u, 1)) @ X @ sp.diags(np.maximum(deg_i, 1) ** -beta)
        return self._dual(left, right)

    def gfcf(self, alpha: float, k: int = 256):
        """GF-CF (Shen et al. 2021): x R̃ᵀR̃ + α x D_I^-½ V Vᵀ D_I^½ with R̃ = D_U^-½ R D_I^-½, V the top-k
        right singular vectors of R̃ (randomized SVD, seeded)."""
        from sklearn.utils.extmath import randomized_svd

        X = self.t.X
        di = np.maximum(np.asarray(X.sum(0)).ravel(), 1)
        du = np.maximum(np.asarray(X.sum(1)).ravel(), 1)
        R = sp.diags(du ** -0.5) @ X @ sp.diags(di ** -0.5)
        R = R.tocsr()
        _, _, Vt = randomized_svd(R, k, random_state=SEED)
        Vt = Vt.astype(np.float32)
        left = (Vt * di ** -0.5).T                         # n × k
        right = Vt * di ** 0.5                             # k × n

        def fn(ub):
            x = self.t.X[ub]
            return np.asarray((x @ R.T @ R).todense()) + alpha * ((x @ left) @ right)
        return fn

    def als(self):
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(**ALS, random_state=SEED)
        t = time.perf_counter()
        model.fit(self.t.X.tocsr(), show_progress=False)
        self.seconds["als_fit"] = round(time.perf_counter() - t, 1)
        U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return lambda ub: U[ub] @ V.T


def text_features(titles: list[str]):
    """arxiv-sanity-lite's TF-IDF (1–2-grams, sublinear tf, English stop words; min_df 2 on titles),
    and BM25 (k1 1.2, b 0.75) document weights over unigram counts."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    tfidf = TfidfVectorizer(strip_accents="unicode", lowercase=True, stop_words="english", ngram_range=(1, 2),
                            token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b", sublinear_tf=True, min_df=2,
                            max_df=0.1, max_features=20000).fit_transform(titles)
    counts = CountVectorizer(strip_accents="unicode", lowercase=True, stop_words="english").fit_transform(titles)
    counts = counts.tocsr().astype(np.float32)
    n, dl = counts.shape[0], np.asarray(counts.sum(1)).ravel()
    df = np.asarray((counts > 0).sum(0)).ravel()
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5)).astype(np.float32)
    k1, b = 1.2, 0.75
    c = counts.tocoo()
    norm = k1 * (1 - b + b * dl[c.row] / dl.mean())
    w = sp.csr_matrix((c.data * (k1 + 1) / (c.data + norm) * idf[c.col], (c.row, c.col)), shape=counts.shape)
    return {"tfidf": tfidf.tocsr(), "counts": counts}, w.tocsr()


# -- running systems -----------------------------------------------------------------------------

def rrf(scores: list[np.ndarray], mask: np.ndarray, k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion (equal weights) of score matrices over the unmasked candidates."""
    out = np.zeros_like(scores[0], np.float32)
    for S in scores:
        S = np.where(mask, S, -np.inf)
        ranks = np.empty_like(S, np.int64)
        order = np.argsort(-S, axis=1, kind="stable")
        np.put_along_axis(ranks, order, np.arange(S.shape[1])[None, :], 1)
        out += 1.0 / (k + 1 + ranks)
    return out


def run_systems(task: Task, fns: dict, combos: dict | None = None, block: int = 512) -> tuple[dict, dict]:
    """Rank every system for every evaluated reader, one block of readers at a time, so components are
    scored once for the blends. Returns ({system: top ids}, {system: seconds})."""
    combos = combos or {}
    tops = {name: [] for name in [*fns, *combos]}
    seconds = {name: 0.0 for name in tops}
    for s in range(0, len(task.users), block):
        ub = task.users[s:s + block]
        scores = {}
        for name, fn in {**fns, **combos}.items():
            t = time.perf_counter()
            scores[name] = fn(ub, scores) if name in combos else fn(ub)
            seconds[name] += time.perf_counter() - t
        sub = Task.__new__(Task)
        sub.__dict__.update(task.__dict__)
        sub.users = ub
        for name, S in scores.items():
            tops[name].append(sub.rank(lambda _ub, S=S: S, block=len(ub)))
        print(f"  {task.name}: {s + len(ub)}/{len(task.users)} readers", end="\r", flush=True)
    print()
    return {n: np.concatenate(v) for n, v in tops.items()}, {n: round(v, 1) for n, v in seconds.items()}


def default_fns(task: Task, E: np.ndarray, variants: dict[str, dict], fit_params: dict | None = None):
    """Score functions of papersift's Recommender (fitted once) for each variant of its score-time params."""
    t = time.perf_counter()
    rec = Recommender(**(fit_params or {})).fit(task.train, E)
    fit_s = time.perf_counter() - t
    libs = [Library(x) for x in task.train]
    fns = {}
    for name, params in variants.items():
        def fn(ub, params=params):
            saved = dict(rec.params)
            rec.params.update(params)
            try:
                return rec.score_many([libs[u] for u in ub])
            finally:
                rec.params.update(saved)
        fns[name] = fn
    return rec, fns, fit_s


def run_split(task: Task, fns: dict, combos: dict, sample_fns: dict, sample_combos: dict, names,
              sample_readers: int = 0) -> dict:
    """Every system on every reader, and `sample_fns` (TF-IDF + SVM and what needs it, with --svm-readers N)
    on a seeded sample of N readers; the sample table holds every system on those readers, for paired tests."""
    tops, seconds = run_systems(task, fns, combos)
    values = evaluate(task, tops, names)
    out: dict = {"readers": len(task.users)}
    if sample_fns:
        sample = np.sort(np.random.default_rng(SEED).choice(task.users, min(sample_readers, len(task.users)), replace=False))
        sub = Task.__new__(Task)
        sub.__dict__.update(task.__dict__)
        sub.users = sample
        stops, sseconds = run_systems(sub, sample_fns, sample_combos)
        rows = np.searchsorted(task.users, sample)
        sample_values = {k: {m: v[rows] for m, v in vals.items()} for k, vals in values.items()}
        sample_only = {k: v for k, v in evaluate(sub, stops, names).items() if k not in values}
        sample_values.update(sample_only)
        for k, v in sample_only.items():
            values[k] = v  # reported in the main table with its reader count; left out of its paired test
        seconds.update({f"{k} (sample)": v for k, v in sseconds.items()})
        table = summarise(sample_values)
        print_table(f"{task.name}, sample of {len(sample)} readers", table)
        out["sample"] = {"readers": len(sample), "systems": table,
                         "default_vs_best_baseline": versus_best(sample_values, "default",
                                                                 [s for s in sample_values if not s.startswith("default")])}
        out["sample_only_systems"] = sorted(sample_only)
    table = summarise(values)
    print_table(f"{task.name}: {len(task.users)} readers", table)
    full = [s for s in values if not s.startswith("default") and s not in out.get("sample_only_systems", [])]
    out.update({"systems": table, "default_vs_best_baseline": versus_best(values, "default", full),
                "seconds": {"score_and_rank": seconds}})
    return out


def evaluate(task: Task, tops: dict, names) -> dict[str, dict[str, np.ndarray]]:
    return {n: task.metrics(top, names) for n, top in tops.items()}


def print_table(title: str, table: dict) -> None:
    print(title, flush=True)
    for name, row in table.items():
        print(f"  {name:<24} " + "  ".join(f"{m} {row[m]:.4f}" for m in row if not m.endswith("_ci95")), flush=True)


# -- timings -------------------------------------------------------------------------------------

def time_default(train: list[np.ndarray], E: np.ndarray) -> dict:
    """Full refresh (fit + top-100 for every reader) and one reader's feed latency."""
    import threadpoolctl

    wait_quiet()
    libs = [Library(x) for x in train]
    t = time.perf_counter()
    rec = Recommender().fit(train, E)
    fit_s = time.perf_counter() - t
    rec.top_many(libs, TOP)
    refresh_s = time.perf_counter() - t
    sample = np.random.default_rng(SEED).choice(len(libs), 300, replace=False)
    feed = {}
    for label, threads in (("one_blas_thread", 1), ("all_threads", None)):
        with threadpoolctl.threadpool_limits(threads):
            for u in sample[:20]:
                rec.top(libs[u], TOP)   # warm-up
            ms = []
            for u in sample:
                t = time.perf_counter()
                rec.top(libs[u], TOP)
                ms.append((time.perf_counter() - t) * 1000)
        feed[label] = {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2),
                       "p99_ms": round(float(np.percentile(ms, 99)), 2)}
    arrays = {n: getattr(rec, n) for n in ("E", "K", "diagP", "ridge_inv", "nbr", "nbr_w", "x_indices", "x_data", "x_indptr")}
    out = {"fit_s": round(fit_s, 1), "refresh_all_readers_s": round(refresh_s, 1), "readers": len(libs),
           "feed_top100": feed, "feed_readers_sampled": len(sample),
           "model_mb": {n: round(a.nbytes / 2**20, 1) for n, a in arrays.items()},
           "model_total_mb": round(sum(a.nbytes for a in arrays.values()) / 2**20, 1)}
    out["catalog_75k"] = time_75k(rec, libs, sample)
    return out


def time_75k(rec: Recommender, libs: list[Library], sample: np.ndarray) -> dict:
    """The production catalog's size: 74,728 items, the 16,980 here plus 57,748 papers nobody kept, added
    cold (add_items). Their vectors are perturbed copies of CiteULike-a's (timing only: the cost does not
    depend on what the vectors say). Feed = top-100 over all items, and over a "today" window of 1,000."""
    import threadpoolctl

    rng = np.random.default_rng(SEED)
    extra = rec.E[rng.integers(0, rec.n_items, 74728 - rec.n_items)] + 0.05 * rng.standard_normal((74728 - rec.n_items,
                                                                                                     rec.E.shape[1]))
    extra = (extra / np.linalg.norm(extra, axis=1, keepdims=True)).astype(np.float32)
    t = time.perf_counter()
    added = rec.add_items(extra)
    add_s = time.perf_counter() - t
    today = added[-1000:]
    out = {"items": rec.n_items, "add_items_s": round(add_s, 1)}
    with threadpoolctl.threadpool_limits(1):
        for label, candidates in (("feed_top100_all_items", None), ("feed_top100_today_1000", today)):
            ms = []
            for u in sample[:100]:
                t = time.perf_counter()
                rec.top(libs[u], TOP, candidates=candidates)
                ms.append((time.perf_counter() - t) * 1000)
            out[label] = {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p90_ms": round(float(np.percentile(ms, 90)), 2)}
    return out


def time_blend(task: Task, base: Baselines, fns: dict) -> float:
    """measured.md's blend refreshed for all readers: ALS and item-kNN fits + scoring + top-100."""
    t = time.perf_counter()
    als = base.als()
    knn = base.itemknn()
    parts = {"als": als, "itemknn": knn, "dense_top3": fns["dense_top3"], "bm25": fns["bm25"]}
    everyone = Task.__new__(Task)
    everyone.__dict__.update(task.__dict__)
    everyone.users = np.arange(len(task.train))
    everyone.rank(lambda ub: sum(w * zscore(parts[n](ub)) for n, w in BLEND_WARM.items()))
    return round(time.perf_counter() - t, 1)


# -- tuning on validation splits -------------------------------------------------------------------

def _means(task: Task, fns: dict, names) -> dict[str, dict[str, float]]:
    tops, _ = run_systems(task, fns)
    return {n: {m: round(float(v.mean()), 4) for m, v in vals.items()} for n, vals in evaluate(task, tops, names).items()}


def _best(grid: dict[str, dict[str, float]]) -> str:
    """The rule: the highest Recall@50 + nDCG@10 on validation."""
    return max(grid, key=lambda k: grid[k]["recall@50"] + grid[k]["ndcg@10"])


def tune(E, n, wv: Task, cv: Task, part: str) -> dict:
    wait_quiet()
    out: dict = {"rule": "highest validation Recall@50 + nDCG@10", "warm_valid_readers": len(wv.users),
                 "cold_valid_readers": len(cv.users), "cold_valid_items": int(len(cv.candidates))}
    if part in ("all", "warm"):
        out.update(tune_warm(E, wv))
    if part in ("all", "cold"):
        out.update(tune_cold(E, cv))
    return out


def tune_warm(E, wv: Task) -> dict:
    out, grid = {}, {}
    settings = [(l2, 0.0) for l2 in (25, 50, 100, 150, 200, 400)] + \
               [(l2, a) for l2 in (100, 150, 200) for a in (50, 200, 500)]
    for l2, alpha in settings:
        _, fns, _ = default_fns(wv, E, {"d": {}}, {"l2": l2, "content_weight": alpha})
        grid[f"l2={l2:g} content_weight={alpha:g}"] = res = _means(wv, fns, WARM_METRICS)["d"]
        print(f"warm-valid l2={l2} alpha={alpha}: {res}", flush=True)
    out["warm_default_and_ease"] = grid
    out["warm_chosen"] = _best({k: v for k, v in grid.items() if not k.endswith("content_weight=0")})
    out["ease_chosen"] = _best({k: v for k, v in grid.items() if k.endswith("content_weight=0")})
    base = Baselines(wv, E, None, None)
    out["rp3beta"] = {f"beta={b}": _means(wv, {"r": base.rp3beta(b)}, WARM_METRICS)["r"] for b in (0.0, 0.25, 0.5, 0.75)}
    out["gfcf"] = {f"alpha={a}": _means(wv, {"g": base.gfcf(a)}, WARM_METRICS)["g"] for a in (0.0, 0.1, 0.3, 1.0)}
    print("rp3beta", out["rp3beta"], "\ngfcf", out["gfcf"], flush=True)
    return out


def tune_cold(E, cv: Task) -> dict:
    """The score-time constants around the defaults, one at a time, then the fit constants."""
    out = {}
    rec, _, _ = default_fns(cv, E, {})
    libs = [Library(x) for x in cv.train]
    cold_grid = {}
    variants = [{"transfer_share": s} for s in (0.0, 0.25, 0.5, 0.75, 1.0)] + \
               [{"neighbours": k} for k in (10, 100)] + [{"bandwidth": t} for t in (0.02, 0.05, 0.2, 1.0)] + \
               [{"ridge": mu} for mu in (10.0, 100.0)]
    defaults = dict(rec.params)
    for v in variants:
        rec.params.update(v)
        rec.ridge_inv = np.linalg.inv(rec.Ew.T.astype(np.float64) @ rec.Ew + rec.params["ridge"] * np.eye(E.shape[1])
                                      ).astype(np.float32)
        del rec.nbr
        rec._cold_tables()
        name = " ".join(f"{k}={x:g}" for k, x in v.items())
        cold_grid[name] = _means(cv, {"d": lambda ub: rec.score_many([libs[u] for u in ub])}, COLD_METRICS)["d"]
        print(f"cold-valid {name}: {cold_grid[name]}", flush=True)
        rec.params.update(defaults)
    out["cold_score_time"] = cold_grid
    fit_grid = {}
    for l2, alpha in ((100, 500), (200, 500), (150, 200), (150, 1000)):
        _, fns, _ = default_fns(cv, E, {"d": {}}, {"l2": l2, "content_weight": alpha})
        fit_grid[f"l2={l2} content_weight={alpha}"] = _means(cv, fns, COLD_METRICS)["d"]
        print(f"cold-valid l2={l2} alpha={alpha}: {fit_grid[f'l2={l2} content_weight={alpha}']}", flush=True)
    out["cold_fit"] = fit_grid
    return out


# -- main ----------------------------------------------------------------------------------------

def uptime() -> str:
    import subprocess

    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "recommend_citeulike.json"))
    ap.add_argument("--tune", choices=("all", "warm", "cold"), help="run these validation grids, keep them in --out, stop")
    ap.add_argument("--no-svm", action="store_true", help="skip the TF-IDF + SVM baseline and the cold blend")
    ap.add_argument("--svm-readers", type=int, default=0,
                    help="fit the per-reader SVMs for a seeded sample of this many readers only (0: all; ≈ 0.05 s each)")
    args = ap.parse_args()
    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    load_before = uptime()
    titles, users = load()
    E = embeddings(titles)
    n = len(titles)
    train, test = warm_split(users, SEED)
    train_v, valid = warm_split(train, VALID_SEED)
    cold, ctrain, ctest = cold_split(users, np.arange(n), SEED)
    vcold, ctrain_v, cvalid = cold_split(ctrain, np.setdiff1d(np.arange(n), cold), VALID_SEED)
    digests = save_splits({"warm_train": train, "warm_test": test, "warm_valid_train": train_v, "warm_valid": valid,
                           "cold_items": cold, "cold_train": ctrain, "cold_test": ctest, "cold_valid_items": vcold,
                           "cold_valid_train": ctrain_v, "cold_valid": cvalid})
    splits = {"seed": SEED, "valid_seed": VALID_SEED, "folder": "bench/results/work/recommend_splits", "sha256": digests}
    if args.tune:
        tuning = tune(E, n, Task("warm-valid", train_v, valid, n), Task("cold-valid", ctrain_v, cvalid, n, vcold),
                      args.tune)
        tuning["splits"] = splits
        tuning[f"uptime_{args.tune}"] = [load_before, uptime()]
        write_result(out, {**previous, "tuning": {**previous.get("tuning", {}), **tuning}})
        print(f"wrote the tuning into {out}")
        return

    wait_quiet()
    tfidf, bm25w = text_features(titles)
    result: dict = {"protocols": "CiteULike-a warm (5) and cold start (6), ../shared/data/README.md",
                    "data": {"readers": len(users), "papers": n, "pairs": int(sum(len(u) for u in users))},
                    "splits": splits, "content": "titles only, all-MiniLM-L6-v2 int8 (papersift's default embedder)",
                    "constants": {"default": Recommender().params, "ease_l2": EASE_L2, "rp3beta_beta": RP3_BETA,
                                  "gfcf_alpha": GFCF_ALPHA, "gfcf_k": 256, "als": ALS, "blend_warm_zscores": BLEND_WARM,
                                  "blend_cold_rrf": list(BLEND_COLD), "svm": "LinearSVC C=0.01 balanced, tol 1e-4"}}
    # warm
    warm = Task("warm", train, test, n)
    base = Baselines(warm, E, tfidf, bm25w)
    ease_rec, ease_fns, ease_fit = default_fns(warm, E, {"ease": {}}, {"l2": EASE_L2, "content_weight": 0.0})
    _, dfns, default_fit = default_fns(warm, E, {"default": {}})
    fns = {"random": base.random, "popularity": base.popularity, "bm25": base.bm25, "dense_mean": base.dense_mean,
           "dense_top3": base.dense_top3, "itemknn": base.itemknn(), "rp3beta": base.rp3beta(RP3_BETA),
           "gfcf": base.gfcf(GFCF_ALPHA), "als": base.als(), "ease": ease_fns["ease"], "default": dfns["default"]}
    combos = {"blend": lambda ub, S: sum(w * zscore(S[k]) for k, w in BLEND_WARM.items())}
    svm = {} if args.no_svm else {"tfidf_svm": base.tfidf_svm}
    if args.svm_readers:
        result["warm"] = run_split(warm, fns, combos, svm, {}, WARM_METRICS, args.svm_readers)
    else:
        result["warm"] = run_split(warm, {**fns, **svm}, combos, {}, {}, WARM_METRICS)
    result["warm"]["seconds"].update({"default_fit": round(default_fit, 1), "ease_fit": round(ease_fit, 1), **base.seconds})
    del ease_rec, ease_fns
    # cold start
    coldt = Task("cold", ctrain, ctest, n, candidates=cold)
    cbase = Baselines(coldt, E, tfidf, bm25w)
    variants = {"default": {}, "default_transfer_only": {"transfer_share": 1.0}, "default_ridge_only": {"transfer_share": 0.0}}
    _, cfns, cfit = default_fns(coldt, E, variants)
    fns = {"random": cbase.random, "bm25": cbase.bm25, "dense_mean": cbase.dense_mean, "dense_top3": cbase.dense_top3,
           **cfns}
    mask = ~coldt.blocked
    blend = {} if args.no_svm else {"blend": lambda ub, S: rrf([S[k] for k in BLEND_COLD], mask)}
    if args.svm_readers and not args.no_svm:
        sample_fns = {"tfidf_svm": cbase.tfidf_svm, "dense_top3": cbase.dense_top3, "dense_mean": cbase.dense_mean}
        result["cold"] = run_split(coldt, fns, {}, sample_fns, blend, COLD_METRICS, args.svm_readers)
    else:
        result["cold"] = run_split(coldt, {**fns, **({} if args.no_svm else {"tfidf_svm": cbase.tfidf_svm})}, blend,
                                   {}, {}, COLD_METRICS)
    result["cold"].update({"new_papers": int(len(cold))})
    result["cold"]["seconds"]["default_fit"] = round(cfit, 1)
    # timings
    result["timing"] = {"default": time_default(train, E)}
    print("timing", result["timing"], flush=True)
    result["timing"]["blend_refresh_all_readers_s"] = time_blend(warm, base, {"dense_top3": base.dense_top3,
                                                                               "bm25": base.bm25})
    result["machine"] = {"uptime": [load_before, uptime()],
                         "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if "tuning" in previous:
        result["tuning"] = previous["tuning"]
    write_result(out, result)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
