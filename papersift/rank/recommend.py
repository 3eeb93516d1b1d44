"""Personal recommendations: the papers one reader will want next, including papers listed this morning
that nobody has touched yet. numpy + scipy.sparse; no store, no I/O but `save`/`load` of .npy files.

The model, measured against the baselines on CiteULike-a (bench/recommend_citeulike.py, figures in
bench/results/recommend_citeulike.json), has two parts that predict the same quantity, "this reader
would keep this paper", so their scores share one scale and one feed can mix old and new papers.

Papers readers have kept ("warm"): collective EASE. EASE (Steck 2019) learns an item-item matrix B
that rebuilds every reader's library from the rest of it, in closed form:
    B = argmin ‖X − X B‖² + λ‖B‖²  with diag(B) = 0,   scores of a reader = x B
Collective EASE (Jeunen, Van Balen & Goethals 2020) adds the papers' embeddings as extra "readers",
rows √α·Eᵀ, so papers with close meaning are linked before readers link them, and readers' links take
over as they arrive: a paper with few readers leans on its content. It is solved in its dual, with
K = (X̃ X̃ᵀ + λI)⁻¹ over readers + embedding dimensions (X̃ = [X; √α Eᵀ]) instead of a papers × papers
inverse, by the push-through identity
    P = (X̃ᵀX̃ + λI)⁻¹ = (I − X̃ᵀ K X̃) / λ,   x B = x − (x P) / diag(P)
so memory and fit time grow with the square of the number of readers, not of papers, and a reader
who was not in the fit, or whose library changed since, is folded in exactly by the same formula.

Papers nobody has kept yet ("cold"), the mean of two content predictions of that same score:
  transfer  kernel regression (Nadaraya–Watson) of the reader's EASE scores x B over the paper's
            NEIGHBOURS, the kept papers closest to it by embedding, weights ∝ exp(cosine / τ): a new paper
            inherits what readers do with papers like it, a near-copy of a kept paper most of its score;
  ridge     a ridge regression, per reader, of "in my library" on the embeddings of the kept papers:
            p = (EᵀE + μI)⁻¹ Σ wᵢ eᵢ, score e · p, what sets this reader's papers apart from the rest
            (closed form; the inverse is shared by all readers).

Dismissed papers ("not interested") and their near-duplicates go down by their cosine to the closest
dismissed paper (nothing below DISMISS_FLOOR, the most at cosine 1), on the scale of the reader's
own scores. The constants were chosen on validation splits carved from CiteULike-a's training part
(the bench's --tune), never on its test hold-out.

Running it: `fit` nightly (or after enough new interactions) on every reader's positives and the
embeddings of every paper, then `save`; `add_items` for papers that arrive between fits (they are cold
until the next fit); per request, `top` with the reader's current Library, so a save made a minute ago
counts at once (the fold-in is exact). Cost: the fit inverts a (readers + d)² matrix, O((U + d)³),
and K takes (U + d)² float32 (5,551 readers: 140 MB); a request costs O(readers who share a paper
with the reader · (U + d) + entries of X + kept papers · d + new papers · (neighbours + d)), linear in
the catalog; `candidates` (e.g. the last days' papers) limits the new papers' part. Past ~20k readers
the (U + d)² inverse outgrows a small server: fit on a sample of readers and fold the rest in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from papersift.errors import BadInput, MissingExtra, NotFound

FORMAT = "papersift-recommender-2"  # 2: kernel (exp(cos/τ)) neighbour weights
DISMISS_FLOOR = 0.5  # cosine of MiniLM title vectors under which a dismissal does not reach a paper
DISMISS_DEPTH = 1.5  # a dismissed paper's near-copy loses 1.5 × (top score − median score): off the feed
BLOCK = 256  # readers scored together: bounds the (readers × items) temporaries
_ARRAYS = ("E", "warm", "x_indptr", "x_indices", "x_data", "K", "diagP", "ridge_inv", "nbr", "nbr_w")


def _sparse():
    try:
        import scipy.sparse as sp
    except ImportError:
        raise MissingExtra("scipy", "recommend", install="pip install scipy") from None
    return sp


@dataclass
class Library:
    """One reader's signal, as item indices into the model's item space (rows of item_vectors).

    `weights` (optional, one per positive): how much each counts, e.g. save or upvote 1, a view 0.3.
    `negatives`: dismissed papers ("not interested"); they and their near-duplicates are pushed down.
    """

    positives: np.ndarray
    weights: np.ndarray | None = None
    negatives: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self):
        self.positives = np.asarray(self.positives, np.int64).reshape(-1)
        self.negatives = np.asarray(self.negatives, np.int64).reshape(-1)
        if self.weights is not None:
            self.weights = np.asarray(self.weights, np.float32).reshape(-1)
            if len(self.weights) != len(self.positives):
                raise BadInput(f"{len(self.weights)} weights for {len(self.positives)} positives")

    def weight_vector(self) -> np.ndarray:
        return np.ones(len(self.positives), np.float32) if self.weights is None else self.weights


def _pairs(indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every ordered pair (a, b) of entries inside each segment of a CSR indptr, and the pair's segment."""
    counts = np.diff(indptr)
    per_entry = np.repeat(counts, counts)
    left = np.repeat(np.arange(indptr[-1]), per_entry)
    seg_start = np.repeat(np.repeat(indptr[:-1], counts), per_entry)
    offset = np.arange(len(left)) - np.repeat(np.cumsum(per_entry) - per_entry, per_entry)
    segment = np.repeat(np.repeat(np.arange(len(counts)), counts), per_entry)
    return left, seg_start + offset, segment


def _top_neighbours(queries: np.ndarray, keys: np.ndarray, k: int, bandwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """For each query vector, its k most similar keys and kernel weights ∝ exp(cosine / bandwidth), summing to 1."""
    n, k = len(queries), min(k, len(keys))
    idx, wts = np.zeros((n, k), np.int64), np.zeros((n, k), np.float32)
    for s in range(0, n, 2048):
        sims = queries[s:s + 2048] @ keys.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(keys) else np.tile(np.arange(k), (len(sims), 1))
        near = np.take_along_axis(sims, part, 1)
        w = np.exp((near - near.max(1, keepdims=True)) / bandwidth)
        idx[s:s + len(sims)] = part
        wts[s:s + len(sims)] = w / w.sum(1, keepdims=True)
    return idx, wts


class Recommender:
    """Collective EASE for papers with readers; content transfer + ridge for papers without.

    l2 (λ)              EASE's ridge, in units of one reader's save.
    content_weight (α)  weight of the embedding rows: each dimension counts like α readers.
    neighbours          kept papers a new paper takes its score from,
    bandwidth (τ)       with weights ∝ exp(cosine / τ): a near-copy of a kept paper inherits most of its score.
    ridge (μ)           ridge of the per-reader content regression.
    transfer_share      share of `transfer` in a new paper's score (the rest is `ridge`).
    """

    def __init__(self, l2: float = 150.0, content_weight: float = 500.0, neighbours: int = 30, bandwidth: float = 0.1,
                 ridge: float = 30.0, transfer_share: float = 0.5):
        if l2 <= 0 or content_weight < 0 or neighbours < 1 or bandwidth <= 0 or ridge <= 0 or not 0 <= transfer_share <= 1:
            raise BadInput("recommender parameters out of range", hint="l2 > 0, content_weight ≥ 0, neighbours ≥ 1, "
                           "bandwidth > 0, ridge > 0, 0 ≤ transfer_share ≤ 1.")
        self.params = {"l2": float(l2), "content_weight": float(content_weight), "neighbours": int(neighbours),
                       "bandwidth": float(bandwidth), "ridge": float(ridge), "transfer_share": float(transfer_share)}
        self._fitted = False

    # -- fit ------------------------------------------------------------------------------------

    def fit(self, user_items, item_vectors: np.ndarray, user_weights=None) -> "Recommender":
        """Learn from every reader's positives. `user_items`: one array of item indices per reader (or
        Library objects, whose weights are used; their negatives play no part in the fit);
        `user_weights`: optional per-positive weights; `item_vectors`: [n_items, d] L2-normalised
        embeddings of every item, kept by someone or not (those are scored from content)."""
        sp = _sparse()
        E = np.ascontiguousarray(item_vectors, np.float32)
        if E.ndim != 2 or not len(E):
            raise BadInput("item_vectors must be a non-empty [n_items, d] array")
        if len(user_items) and isinstance(user_items[0], Library):
            user_weights = [lib.weight_vector() for lib in user_items]
            user_items = [lib.positives for lib in user_items]
        lists = [np.asarray(u, np.int64).reshape(-1) for u in user_items]
        flat = np.concatenate(lists) if lists else np.zeros(0, np.int64)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(E)):
            raise BadInput(f"item index out of range 0..{len(E) - 1}")
        data = (np.concatenate([np.asarray(w, np.float32).reshape(-1) for w in user_weights]) if user_weights is not None
                and lists else np.ones(len(flat), np.float32))
        if len(data) != len(flat):
            raise BadInput("user_weights must give one weight per positive")
        U, n = len(lists), len(E)
        self.E = E
        self.warm = np.flatnonzero(np.bincount(flat, minlength=n) > 0)
        indptr = np.zeros(U + 1, np.int64)
        np.cumsum([len(u) for u in lists], out=indptr[1:])
        col = np.full(n, -1, np.int64)
        col[self.warm] = np.arange(len(self.warm))
        # duplicates within a library add up (sum_duplicates), as repeated evidence should
        X = sp.csr_matrix((data, col[flat], indptr), shape=(U, len(self.warm)), dtype=np.float32)
        X.sum_duplicates()
        self.x_indptr, self.x_indices, self.x_data = X.indptr.astype(np.int64), X.indices.astype(np.int64), X.data
        self._prepare()
        self._solve()
        self._cold_tables()
        self._fitted = True
        return self

    def _prepare(self) -> None:
        """Derived state: the item → column map, X and Xᵀ as scipy CSR, the kept papers' vectors."""
        sp = _sparse()
        n, nw = len(self.E), len(self.warm)
        self.col = np.full(n, -1, np.int64)
        self.col[self.warm] = np.arange(nw)
        self.n_users = len(self.x_indptr) - 1
        self.X = sp.csr_matrix((self.x_data, self.x_indices, self.x_indptr), shape=(self.n_users, nw))
        self.Xt = self.X.T.tocsr()
        self.Ew = np.ascontiguousarray(self.E[self.warm])

    def _solve(self) -> None:
        """K, diag(P) and the ridge inverse: the whole fit after the data is in place."""
        U, d = self.n_users, self.E.shape[1]
        X, Xt, Ew = self.X, self.Xt, self.Ew
        l2, alpha = self.params["l2"], self.params["content_weight"]
        G = np.empty((U + d, U + d), np.float64)
        G[:U, :U] = (X @ Xt).toarray()
        XE = np.sqrt(alpha) * (X @ Ew)
        G[:U, U:], G[U:, :U] = XE, XE.T
        G[U:, U:] = alpha * (Ew.T.astype(np.float64) @ Ew)
        G[np.diag_indices_from(G)] += l2
        K = np.linalg.inv(G)
        del G
        self.K = K.astype(np.float32)
        # diag(P) = (1 − diag(X̃ᵀ K X̃)) / λ, one term per block of X̃ = [X; √α Eᵀ]
        a, b, item = _pairs(Xt.indptr)
        users, vals = Xt.indices, Xt.data.astype(np.float64)
        t1 = np.bincount(item, weights=K[users[a], users[b]] * vals[a] * vals[b], minlength=len(self.warm))
        del K, a, b, item
        t2 = 2 * np.sqrt(alpha) * np.asarray(Xt @ self.K[:U, U:] * Ew).sum(1)
        t3 = alpha * ((Ew @ self.K[U:, U:]) * Ew).sum(1)
        self.diagP = ((1.0 - (t1 + t2 + t3)) / l2).astype(np.float32)
        ridge = Ew.T.astype(np.float64) @ Ew + self.params["ridge"] * np.eye(d)
        self.ridge_inv = np.linalg.inv(ridge).astype(np.float32)

    def _cold_tables(self) -> None:
        """Each cold item's kept neighbours, and the (cold × warm) transfer matrix they make."""
        sp = _sparse()
        self.cold = np.flatnonzero(self.col < 0)
        if not hasattr(self, "nbr") or len(self.nbr) != len(self.cold):
            k = self.params["neighbours"]
            if len(self.warm):
                self.nbr, self.nbr_w = _top_neighbours(self.E[self.cold], self.Ew, k, self.params["bandwidth"])
            else:
                self.nbr, self.nbr_w = np.zeros((len(self.cold), 0), np.int64), np.zeros((len(self.cold), 0), np.float32)
        self.Ec = np.ascontiguousarray(self.E[self.cold])
        k = self.nbr.shape[1]
        self.transfer = sp.csr_matrix((self.nbr_w.ravel(), self.nbr.ravel(), np.arange(len(self.cold) + 1) * k),
                                      shape=(len(self.cold), len(self.warm)))

    def add_items(self, item_vectors: np.ndarray) -> np.ndarray:
        """Append items nobody has kept yet (this morning's papers) without a refit; returns their
        indices. They are scored from content until the next fit."""
        self._check()
        new = np.ascontiguousarray(item_vectors, np.float32).reshape(-1, self.E.shape[1])
        first = len(self.E)
        self.E = np.concatenate([self.E, new])
        self.col = np.concatenate([self.col, np.full(len(new), -1, np.int64)])
        if len(self.warm):
            nbr, nbr_w = _top_neighbours(new, self.Ew, self.params["neighbours"], self.params["bandwidth"])
            self.nbr, self.nbr_w = np.concatenate([self.nbr, nbr]), np.concatenate([self.nbr_w, nbr_w])
        else:
            self.nbr = np.zeros((len(self.nbr) + len(new), 0), np.int64)
            self.nbr_w = np.zeros((len(self.nbr), 0), np.float32)
        self._cold_tables()
        return np.arange(first, first + len(new))

    @property
    def n_items(self) -> int:
        return len(self.E)

    def _check(self) -> None:
        if not self._fitted:
            raise BadInput("the recommender is not fitted", hint="Call fit() or Recommender.load() first.")

    def _library_matrix(self, libraries: list[Library]):
        """(len(libraries) × n_items) CSR of the positives' weights."""
        sp = _sparse()
        for lib in libraries:
            bad = np.concatenate([lib.positives, lib.negatives])
            if len(bad) and (bad.min() < 0 or bad.max() >= self.n_items):
                raise NotFound(f"item index out of range 0..{self.n_items - 1}",
                               hint="Items added after the fit need add_items() before they are scored.")
        indptr = np.zeros(len(libraries) + 1, np.int64)
        np.cumsum([len(lib.positives) for lib in libraries], out=indptr[1:])
        idx = np.concatenate([lib.positives for lib in libraries]) if libraries else np.zeros(0, np.int64)
        data = np.concatenate([lib.weight_vector() for lib in libraries]) if libraries else np.zeros(0, np.float32)
        m = sp.csr_matrix((data, idx, indptr), shape=(len(libraries), self.n_items), dtype=np.float32)
        m.sum_duplicates()
        return m

    # -- scoring --------------------------------------------------------------------------------

    def _k_times(self, Yu, Yd: np.ndarray) -> np.ndarray:
        """K Y for Y = [Yu (readers × m, sparse); Yd (d × m)]: (readers + d) × m. K is symmetric, so a
        sparse Yu needs only the rows of K of the readers it touches."""
        U = self.n_users
        Yu = Yu.tocsr()
        touched = np.flatnonzero(np.diff(Yu.indptr))
        if 4 * len(touched) < U:
            Z = self.K[touched].T @ Yu[touched].toarray()
        else:
            Z = self.K[:U].T @ Yu.toarray()
        return Z + self.K[U:].T @ Yd

    def _warm_scores(self, L) -> np.ndarray:
        """x B over the kept papers for each row of L (libraries × n_items CSR): folded in exactly."""
        Xb = L[:, self.warm]
        if not len(self.warm) or not Xb.nnz:
            return Xb.toarray()  # nobody kept anything, or only new papers here: no collaborative signal
        sa = float(np.sqrt(self.params["content_weight"]))
        Z = self._k_times(self.X @ Xb.T, sa * (Xb @ self.Ew).T)
        XtZ = self.Xt @ Z[:self.n_users] + sa * (self.Ew @ Z[self.n_users:])
        x = Xb.toarray()
        return x - ((x - XtZ.T) / self.params["l2"]) / self.diagP

    def _cold_scores(self, L, warm: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        """Scores of the cold items (all, or those at `rows` of the cold tables) for each row of L."""
        share = self.params["transfer_share"]
        Ec = self.Ec if rows is None else self.Ec[rows]
        transfer = self.transfer if rows is None else self.transfer[rows]
        profile = (L @ self.E) @ self.ridge_inv  # ridge: (EᵀE + μI)⁻¹ Σ wᵢ eᵢ over kept and new positives
        cold = (1 - share) * (profile @ Ec.T)
        if transfer.nnz:
            cold += share * (transfer @ warm.T).T  # transfer: the neighbours' x B, kernel-weighted
        return cold

    def score_many(self, libraries: list[Library], candidates: np.ndarray | None = None) -> np.ndarray:
        """Scores (len(libraries) × n_items, or × len(candidates) in their order), higher is better:
        collective EASE for kept papers, content transfer + ridge for the rest, dismissals applied. A
        library's own positives get their leave-one-out score; `top` leaves them out. Candidates save
        the content scoring of the new papers left out (a "today" feed over a large catalog)."""
        self._check()
        items = None if candidates is None else np.asarray(candidates, np.int64).reshape(-1)
        if items is not None and len(items) and (items.min() < 0 or items.max() >= self.n_items):
            raise NotFound(f"candidate out of range 0..{self.n_items - 1}")
        col = self.col if items is None else self.col[items]
        warm_at, cold_at = np.flatnonzero(col >= 0), np.flatnonzero(col < 0)
        rows = None if items is None else np.searchsorted(self.cold, items[cold_at])
        out = np.empty((len(libraries), self.n_items if items is None else len(items)), np.float32)
        for s in range(0, len(libraries), BLOCK):
            block = libraries[s:s + BLOCK]
            L = self._library_matrix(block)
            warm = self._warm_scores(L)
            out[s:s + len(block), warm_at] = warm[:, col[warm_at]]
            if len(cold_at):
                out[s:s + len(block), cold_at] = self._cold_scores(L, warm, rows)
            for r, lib in enumerate(block):
                if len(lib.negatives):
                    # the scale: this reader's scores of the kept papers (the same whatever the candidates)
                    scale = warm[r] if warm.shape[1] else out[s + r]
                    spread = float(scale.max() - np.median(scale)) if len(scale) else 0.0
                    self._dismiss(out[s + r], lib, items, spread or 1.0)
        return out

    def _dismiss(self, scores: np.ndarray, library: Library, items: np.ndarray | None, spread: float) -> None:
        """Push dismissed papers and those close to them down by up to DISMISS_DEPTH · spread, in place."""
        E = self.E if items is None else self.E[items]
        closeness = (self.E[library.negatives] @ E.T).max(axis=0)
        reach = np.clip((closeness - DISMISS_FLOOR) / (1 - DISMISS_FLOOR), 0, 1)
        scores -= DISMISS_DEPTH * spread * reach

    def score(self, library: Library, candidates: np.ndarray | None = None) -> np.ndarray:
        """One reader's scores for every item (or for `candidates`, in their order): any reader, in the
        fit or not, with any number of positives."""
        return self.score_many([library], candidates)[0]

    def top(self, library: Library, k: int, exclude: np.ndarray | None = None,
            candidates: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The k best (item, score), best first, without the reader's positives, negatives and `exclude`;
        only among `candidates` when given."""
        return self.top_many([library], k, None if exclude is None else [exclude], candidates)[0]

    def top_many(self, libraries: list[Library], k: int, excludes: list | None = None,
                 candidates: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """`top` for many readers at once (the nightly refresh of every reader's feed)."""
        self._check()
        items = np.arange(self.n_items) if candidates is None else np.unique(np.asarray(candidates, np.int64))
        results = []
        for s in range(0, len(libraries), BLOCK):
            block = libraries[s:s + BLOCK]
            scores = self.score_many(block, None if candidates is None else items)
            for r, lib in enumerate(block):
                drop = [lib.positives, lib.negatives]
                if excludes is not None and excludes[s + r] is not None:
                    drop.append(np.asarray(excludes[s + r], np.int64))
                drop = np.concatenate(drop)
                at = np.searchsorted(items, drop)
                at = at[(at < len(items)) & (items[np.minimum(at, len(items) - 1)] == drop)]
                scores[r, at] = -np.inf
            kk = min(k, len(items))
            if not kk:
                results += [[] for _ in block]
                continue
            part = (np.argpartition(-scores, kk - 1, axis=1)[:, :kk] if kk < len(items)
                    else np.tile(np.arange(kk), (len(block), 1)))
            vals = np.take_along_axis(scores, part, 1)
            order = np.lexsort((part, -vals), axis=1)  # ties: the smaller index first
            for r in range(len(block)):
                results.append([(int(items[part[r, j]]), float(vals[r, j])) for j in order[r] if np.isfinite(vals[r, j])])
        return results

    def explain(self, library: Library, item: int, k: int = 3) -> list[tuple[int, float]]:
        """The reader's positives that lift `item` the most, as (positive, its share of the item's score),
        largest first: "why am I seeing this?". Falls back to the closest positives by cosine when no
        positive lifts it (e.g. a new paper only the ridge profile ranks)."""
        self._check()
        item = int(item)
        if not 0 <= item < self.n_items:
            raise NotFound(f"item {item} is not in the model")
        pos, w = library.positives, library.weight_vector()
        if not len(pos):
            return []
        share = self.params["transfer_share"]
        contrib = np.zeros(len(pos), np.float64)
        if self.col[item] >= 0:
            contrib += w * self._b_rows(pos, np.array([self.col[item]]))[:, 0]
        else:
            c = int(np.searchsorted(self.cold, item))
            nbr, nbr_w = self.nbr[c], self.nbr_w[c]
            if len(nbr):
                contrib += share * w * (self._b_rows(pos, nbr) @ nbr_w)
            contrib += (1 - share) * w * (self.E[pos] @ (self.ridge_inv @ self.E[item]))
        order = np.argsort(-contrib, kind="stable")
        lifted = [(int(pos[i]), float(contrib[i])) for i in order if contrib[i] > 0 and pos[i] != item]
        if lifted:
            return lifted[:k]
        sims = self.E[pos] @ self.E[item]
        return [(int(pos[i]), float(sims[i])) for i in np.argsort(-sims, kind="stable") if pos[i] != item][:k]

    def _b_rows(self, items: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """B[items, cols] (items as catalog indices; rows of items nobody kept are 0)."""
        out = np.zeros((len(items), len(cols)), np.float64)
        rows = self.col[items]
        kept = rows >= 0
        if not kept.any() or not len(cols):
            return out
        sa = float(np.sqrt(self.params["content_weight"]))
        Z = self._k_times(self.Xt[cols].T, sa * self.Ew[cols].T)          # K x̃_j for each column j
        inner = self.Xt[rows[kept]] @ Z[:self.n_users] + sa * (self.Ew[rows[kept]] @ Z[self.n_users:])
        b = (inner / self.params["l2"]) / self.diagP[cols]                 # −P_ij / P_jj for i ≠ j
        b[rows[kept][:, None] == cols[None, :]] = 0.0                       # diag(B) = 0
        out[kept] = b
        return out

    # -- persistence ----------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        """Write the fitted model as .npy files (allow_pickle=False) and manifest.json into `folder`."""
        self._check()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        for name, value in arrays.items():
            tmp = folder / f"{name}.tmp.npy"
            np.save(tmp, np.ascontiguousarray(value), allow_pickle=False)
            os.replace(tmp, folder / f"{name}.npy")
        manifest = {"format": FORMAT, "params": self.params, "n_items": self.n_items, "n_users": self.n_users,
                    "n_warm": int(len(self.warm)), "dim": int(self.E.shape[1]),
                    "arrays": {n: {"shape": list(v.shape), "dtype": str(v.dtype)} for n, v in arrays.items()}}
        tmp = folder / "manifest.tmp.json"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, folder / "manifest.json")

    @classmethod
    def load(cls, folder: str | Path) -> "Recommender":
        folder = Path(folder)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            raise NotFound(f"no recommender model in {folder} ({e})", hint="Fit and save one first.") from None
        if manifest.get("format") != FORMAT:
            raise BadInput(f"{folder} holds a {manifest.get('format')!r} model, not {FORMAT!r}", hint="Refit it.")
        model = cls(**manifest["params"])
        for name, meta in manifest["arrays"].items():
            value = np.load(folder / f"{name}.npy", allow_pickle=False)
            if list(value.shape) != meta["shape"] or str(value.dtype) != meta["dtype"]:
                raise BadInput(f"{folder / (name + '.npy')} does not match its manifest", hint="Refit the model.")
            setattr(model, name, value)
        model._prepare()
        model._cold_tables()
        model._fitted = True
        return model
