"""The recommendation model (rank/recommend.py) over the catalog: fit it from every reader's kept
papers (`papersift update`, or `refresh_model`), save it beside the catalog, and score a reader's feed
candidates with it (`PersonalModel`), papers nobody has kept yet included.

Item space: every paper a reader kept (saved, upvoted, put in a collection) that has an embedding.
The fit is nightly-sized: its cost grows with the square of the number of readers, not of papers.
At serve time the feed's candidates that are not in the model (new papers) are added as cold items,
scored from their content through the papers readers did keep, until the next fit.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from papersift.rank.recommend import Library, Recommender
from papersift.store.base import Store

log = logging.getLogger(__name__)
KEEP_WEIGHTS = {"save": 1.0, "upvote": 1.0}
MIN_READERS = 2  # below this there is nothing to learn across readers: the content feed serves alone


def model_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "recommend"


def reader_libraries(store: Store) -> dict[int, dict[int, float]]:
    """Every reader's kept papers with weights (a paper kept several ways counts once, at its largest).
    Putting a paper in a collection saves it too (web/actions.py), so saves cover collections."""
    out: dict[int, dict[int, float]] = {}
    for user, pid, kind, _ in store.interactions(kinds=("save", "upvote")):
        lib = out.setdefault(user, {})
        lib[pid] = max(lib.get(pid, 0.0), KEEP_WEIGHTS[kind])
    return out


def refresh_model(store: Store, data_dir: Path, model: str, dim: int) -> str:
    """Fit the model on every reader's library and save it (replacing the last one in one rename)."""
    t = time.perf_counter()
    libraries = reader_libraries(store)
    if len(libraries) < MIN_READERS:
        return f"{len(libraries)} reader(s) with kept papers: the content feed serves alone"
    kept = sorted({pid for lib in libraries.values() for pid in lib})
    ids, vectors = store.paper_embeddings(model, kept, dim)
    index = {int(pid): i for i, pid in enumerate(ids.tolist())}
    users = sorted(libraries)
    lists = [np.array([index[p] for p in libraries[u] if p in index], np.int64) for u in users]
    weights = [np.array([libraries[u][p] for p in libraries[u] if p in index], np.float32) for u in users]
    rec = Recommender().fit(lists, vectors, user_weights=weights)
    folder = model_folder(data_dir)
    tmp = folder.parent / f".recommend-{uuid.uuid4().hex[:8]}"
    rec.save(tmp)
    np.save(tmp / "paper_ids.npy", ids, allow_pickle=False)
    (tmp / "catalog.json").write_text(json.dumps({"embedding_model": model, "dim": dim, "readers": len(users),
                                                  "papers": len(ids), "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                                 time.gmtime())}))
    old = folder.parent / f".recommend-old-{uuid.uuid4().hex[:8]}"
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return f"fitted on {len(users):,} readers and {len(ids):,} kept papers in {time.perf_counter() - t:.1f} s"


class PersonalModel:
    """A saved model, loaded for serving, extended with the feed's candidate papers as cold items."""

    def __init__(self, rec: Recommender, paper_ids: np.ndarray, model: str):
        self.rec, self.model = rec, model
        self.index = {int(p): i for i, p in enumerate(paper_ids.tolist())}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, data_dir: Path, model: str) -> "PersonalModel | None":
        folder = model_folder(data_dir)
        try:
            meta = json.loads((folder / "catalog.json").read_text())
            if meta.get("embedding_model") != model:
                return None  # fitted on another embedding model's vectors: wait for the next refresh
            return cls(Recommender.load(folder), np.load(folder / "paper_ids.npy", allow_pickle=False), model)
        except FileNotFoundError:
            return None
        except Exception as e:  # a damaged model: the content feed serves until the next refresh
            log.warning("recommendation model in %s cannot be used: %s", folder, e)
            return None

    def include(self, paper_ids: np.ndarray, vectors: np.ndarray) -> None:
        """Make sure these papers are items (new ones are added cold)."""
        with self._lock:
            new = [i for i, p in enumerate(paper_ids.tolist()) if int(p) not in self.index]
            if new:
                at = self.rec.add_items(vectors[new])
                self.index.update(zip((int(paper_ids[i]) for i in new), at.tolist()))

    def scores(self, positives: dict[int, float], dismissed: set[int], candidates: np.ndarray) -> np.ndarray | None:
        """Model scores of `candidates` (paper ids, all included) for a reader, or None when none of the
        reader's papers is in the model (then the content feed decides)."""
        pos = [(self.index[p], w) for p, w in positives.items() if p in self.index]
        if not pos:
            return None
        lib = Library(np.array([i for i, _ in pos], np.int64), np.array([w for _, w in pos], np.float32),
                      np.array([self.index[p] for p in dismissed if p in self.index], np.int64))
        return self.rec.score(lib, np.array([self.index[int(c)] for c in candidates], np.int64))
