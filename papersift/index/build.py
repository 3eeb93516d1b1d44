"""The index step (`papersift index`): full text in step, every changed paper embedded, the vector
index in step with the stored vectors. Incremental, resumable, and safe to interrupt.

The catalog is the source of truth: vectors are stored in it per model+version (store.save_embeddings),
and the HNSW file beside it is only a cache of them — missing, corrupt, built by another model, or
out of step after a crash, it is patched or rebuilt from the catalog.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from papersift.index.embed import Embedder
from papersift.index.lexical import LexicalIndex, open_lexical_index, read_manifest, sync_lexical_index
from papersift.index.vectors import VectorIndex, create_index, open_or_none
from papersift.store.base import Store

log = logging.getLogger(__name__)

EXACT_BELOW = 5_000  # smaller catalogs are searched exactly: faster to build, perfect recall


def model_key(embedder: Embedder) -> str:
    return f"{embedder.name}@{embedder.version}"


def paper_text(title: str, abstract: str) -> str:
    """What a paper is embedded as: its title, then its abstract (the model truncates long ones)."""
    return f"{title}. {abstract}" if abstract else title


def lexical_folder(data_dir: Path) -> Path:
    return Path(data_dir) / "lexical"


def index_folder(data_dir: Path, embedder: Embedder) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in model_key(embedder))
    return Path(data_dir) / "vectors" / safe


@dataclass
class IndexReport:
    fulltext_synced: int = 0
    lexical_action: str = ""
    embedded: int = 0
    vectors: int = 0
    index_action: str = ""
    seconds: dict = field(default_factory=dict)

    def summary(self) -> str:
        parts = [f"full text: {self.fulltext_synced:,} papers synced",
                 f"BM25 index: {self.lexical_action}",
                 f"embedded {self.embedded:,} papers",
                 f"vector index: {self.vectors:,} vectors ({self.index_action})"]
        return "; ".join(parts)


def embed_pending(store: Store, embedder: Embedder, *, batch: int = 256, seconds_per_batch: float | None = 3.0,
                  on_progress: Callable[[int, int], None] | None = None) -> int:
    """Embed every paper with no (or an outdated) vector for this model, one transaction per batch.
    An interruption loses at most the batch in flight; the next call carries on. Batches start at
    `batch` papers and grow or shrink towards `seconds_per_batch` of work, so a fast embedder (the
    static tier: thousands a second) is not held back by per-batch overhead, and a slow one still
    commits often (None: every batch is `batch` papers)."""
    key = model_key(embedder)
    done = 0
    after = (0, 0)
    while True:
        rows = store.papers_to_embed(key, limit=batch, after=after)
        if not rows:
            return done
        started = time.perf_counter()
        vectors = embedder.embed([paper_text(title, abstract) for _, _, title, abstract in rows])
        store.save_embeddings(key, [(pid, seq) for pid, seq, _, _ in rows], vectors)
        elapsed = time.perf_counter() - started
        if seconds_per_batch:
            batch = int(min(max(batch * seconds_per_batch / max(elapsed, 1e-3), 32), 16384, batch * 4))
        after = (rows[-1][1], rows[-1][0])
        done += len(rows)
        if on_progress:
            on_progress(done, len(rows))


def _seq_file(folder: Path, catalog: str) -> Path:
    """The file of paper id → change_seq pairs, named for the catalog (Store.catalog_id) they are of: a
    catalog copied row by row (`db migrate-to`) has its own ids and change_seqs, and another catalog's
    pairs would pass its vectors for up to date."""
    safe = "".join(c for c in catalog if c.isalnum())[:32]
    return folder.parent / f"{folder.name}.seqs-{safe}.npy"


def _load_seqs(folder: Path, catalog: str) -> dict[int, int] | None:
    """paper id → change_seq of the vector the saved index holds; None if unknown (then re-add all)."""
    try:
        pairs = np.load(_seq_file(folder, catalog), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        return None
    return dict(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))


def _save_seqs(folder: Path, catalog: str, ids: np.ndarray, seqs: np.ndarray) -> None:
    target = _seq_file(folder, catalog)
    tmp = target.with_name(target.name + ".tmp.npy")
    np.save(tmp, np.stack([ids, seqs], axis=1).astype(np.int64), allow_pickle=False)
    os.replace(tmp, target)
    for other in folder.parent.glob(f"{folder.name}.seqs*.npy"):  # another catalog's, or the unnamed old one
        if other != target:
            other.unlink(missing_ok=True)


_OPEN = object()  # sync_vector_index's default: open the saved index itself


def sync_vector_index(store: Store, embedder: Embedder, folder: Path, *, kind: str | None = None,
                      opened: VectorIndex | None | object = _OPEN) -> tuple[VectorIndex, str]:
    """The vector index for this model, in step with the stored vectors, saved to `folder`. An update
    reads only the vectors it adds: a day's new papers in a 75k catalog need 250 of them, not 75k.
    `opened`: what open_or_none(folder) gave, when the caller has read it already (build_index reads it
    while the embedder works)."""
    key = model_key(embedder)
    catalog = store.catalog_id()
    ids, seqs = store.embedding_seqs(key)
    want = kind or ("exact" if len(ids) < EXACT_BELOW else "hnsw")
    index = open_or_none(folder, expect_model=key) if opened is _OPEN else opened
    saved = _load_seqs(folder, catalog) if index is not None else None
    if index is not None and index.kind == want:
        live = index.ids()
        stale = np.setdiff1d(live, ids, assume_unique=True)
        missing = np.setdiff1d(ids, live, assume_unique=True)
        present = ~np.isin(ids, missing)
        if saved is None:  # which vectors the index holds is unknown: replace them all
            changed = ids[present]
        else:
            changed = np.array([i for i, s in zip(ids[present].tolist(), seqs[present].tolist())
                                if saved.get(i) != s], dtype=np.int64)
        if stale.size:
            index.remove(stale)
        todo = np.union1d(missing, changed)
        if todo.size:
            # a paper deleted since embedding_seqs has no vector left: add what is there
            index.add(*_vectors_of(store, key, embedder.dim, todo, len(ids)))
        if not (stale.size or todo.size):
            return index, "up to date"
        action = f"updated: +{missing.size:,} new, {changed.size:,} changed, -{stale.size:,} removed"
    else:
        ids, vectors, seqs = store.load_embeddings(key, embedder.dim, with_seq=True)
        index = create_index(want, embedder.dim, model=key)
        if len(ids):
            index.add(ids, vectors)
        action = f"built ({want})"
    index.save(folder, model=key)
    _save_seqs(folder, catalog, ids, seqs)
    return index, action


def _vectors_of(store: Store, key: str, dim: int, todo: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) stored for `todo`: by id for a few, one scan of them all for many."""
    if todo.size * 4 < total:
        return store.paper_embeddings(key, todo.tolist(), dim)
    ids, vectors = store.load_embeddings(key, dim)
    keep = np.isin(ids, todo)
    return ids[keep], vectors[keep]


def build_index(store: Store, embedder: Embedder, data_dir: Path, *,
                on_progress: Callable[[int, int], None] | None = None) -> IndexReport:
    """Both stages, keyword first: a running server searches the new papers by keyword (rank/service.py
    reloads what changed) while they are being embedded."""
    report = IndexReport()
    sync_keyword_indexes(store, data_dir, report)
    sync_vectors(store, embedder, data_dir, report, on_progress=on_progress)
    return report


def sync_keyword_indexes(store: Store, data_dir: Path, report: IndexReport) -> None:
    """Stage 1: the catalog's full text, then the BM25 index."""
    t = time.perf_counter()
    report.fulltext_synced = store.sync_fulltext()
    report.seconds["fulltext"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    _, report.lexical_action = sync_lexical_index(store, lexical_folder(data_dir))
    report.seconds["lexical"] = round(time.perf_counter() - t, 2)


def sync_vectors(store: Store, embedder: Embedder, data_dir: Path, report: IndexReport, *,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    """Stage 2: embed what changed, then bring the vector index in step. The saved index is read on a
    thread of its own meanwhile (~1 s at 75k vectors: sha256 and file reads, which leave the embedder's
    cores alone; measured, the embedding took no longer), so a day's update waits for it no more."""
    folder = index_folder(data_dir, embedder)
    t = time.perf_counter()
    with ThreadPoolExecutor(1, thread_name_prefix="papersift-open-index") as pool:
        reading = pool.submit(open_or_none, folder, expect_model=model_key(embedder))
        report.embedded = embed_pending(store, embedder, on_progress=on_progress)
        report.seconds["embed"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        opened = reading.result()
    index, report.index_action = sync_vector_index(store, embedder, folder, opened=opened)
    report.vectors = len(index)
    report.seconds["vectors"] = round(time.perf_counter() - t, 2)


FAST_TIER = "static"  # the embedder spec of the fast tier (index/static.py)
COMPLETE = 0.99  # an index holding this share of the catalog counts as complete


def vectors_of_another_catalog(folder: Path, catalog: str) -> bool:
    """True when the vector index in `folder` was saved for another catalog than `catalog` (its row ids
    are not this catalog's: the data dir's catalog was copied to PostgreSQL and `papersift index` has
    not run since). An index saved before indexes recorded their catalog counts as this one's."""
    if _seq_file(folder, catalog).exists():
        return False
    return any(folder.parent.glob(f"{folder.name}.seqs-*.npy"))


def searchable_lexical(store: Store, data_dir: Path) -> LexicalIndex | None:
    """The BM25 index search should use: None when there is none or it is another catalog's (as for
    vectors above; the catalog's own full text answers meanwhile)."""
    folder = lexical_folder(data_dir)
    index = open_lexical_index(folder)
    catalog = store.catalog_id()
    if index is not None and (read_manifest(folder) or {}).get("catalog", catalog) != catalog:
        log.warning("the BM25 index in %s was built from another catalog: run `papersift index`", folder)
        return None
    return index


def searchable_tier(store: Store, data_dir: Path, embedders: list[Embedder]) -> tuple[Embedder | None,
                                                                                      VectorIndex | None]:
    """The embedder and index that search should use, from `embedders` best first: the first whose
    index covers the catalog, else the one covering most of it. So after `papersift index --fast` a
    new catalog is searched with the static tier until the full model's index has caught up. Another
    catalog's index is never used."""
    papers, catalog = store.count_papers(), store.catalog_id()
    best: tuple[Embedder | None, VectorIndex | None] = (None, None)
    for embedder in embedders:
        folder = index_folder(data_dir, embedder)
        if vectors_of_another_catalog(folder, catalog):
            log.warning("the vector index in %s was built from another catalog: run `papersift index`", folder)
            continue
        index = open_or_none(folder, expect_model=model_key(embedder))
        if index is None:
            continue
        if len(index) >= COMPLETE * papers:
            return embedder, index
        if best[1] is None or len(index) > len(best[1]):
            best = (embedder, index)
    return best
