"""Nearest neighbours of float32 vectors keyed by catalog row ids (int64), by cosine (inner product of
vectors normalised on the way in). `create_index(kind, dim)` builds ExactIndex (numpy matvec, exact) or
HnswIndex (an hnswlib graph plus a float32 side copy of the vectors, scanned exactly when the index is
small or a filter selective: the copy doubles vector memory, but a numpy row gather is ~20-40x faster
than hnswlib's get_items; bench/vectors_scale.py measures both).

On disk: a folder whose `CURRENT` names the live version subfolder (manifest.json, ids.npy, and index.bin
in hnswlib's format or vectors.npy; no pickles). A save fills a temp folder, renames it, then switches
CURRENT with os.replace, so a crash mid-save leaves the previous version loadable; one writer per folder.
`load` checks every file against the manifest and raises IndexCorrupt on any mismatch: rebuild from the
catalog, the source of truth."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from papersift.errors import BadInput, MissingExtra, PapersiftError

log = logging.getLogger(__name__)
FORMAT = 1


class IndexMissing(PapersiftError):
    status = 404
    hint = "Build the vector index from the catalog."


class IndexCorrupt(PapersiftError):
    status = 500
    hint = "The catalog is the source of truth: rebuild the vector index from it."


@runtime_checkable
class VectorIndex(Protocol):
    kind: str
    dim: int
    model: str  # free-form name of the embedding model, kept in the manifest

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> None: ...
    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...
    def ids(self) -> np.ndarray: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: object) -> bool: ...
    def save(self, folder: str | Path, model: str | None = None) -> None: ...
    @classmethod
    def load(cls, folder: str | Path, **params) -> VectorIndex: ...


def create_index(kind: str, dim: int, **params) -> VectorIndex:
    if kind not in KINDS:
        raise BadInput(f"unknown vector index kind {kind!r}", hint=f"use one of: {', '.join(KINDS)}")
    return KINDS[kind](dim, **params)


def load_index(folder: str | Path, **params) -> VectorIndex:
    """Load whichever kind the folder holds; params override run-time settings (ef_search, …)."""
    kind = _read_checked(Path(folder), None, [])[1].get("kind")
    return KINDS[kind].load(folder, **params)


def open_or_none(folder: str | Path, expect_model: str | None = None, **params) -> VectorIndex | None:
    """The saved index, or None (logged) when it is missing, corrupt or built by another model."""
    try:
        index = load_index(folder, **params)
    except (IndexMissing, IndexCorrupt) as e:
        log.log(logging.INFO if isinstance(e, IndexMissing) else logging.WARNING, "vector index: %s", e)
        return None
    if expect_model is not None and index.model != expect_model:
        log.warning("vector index in %s was built by model %r, not %r", folder, index.model, expect_model)
        return None
    return index


def _as_ids(ids) -> np.ndarray:
    ids = np.asarray(ids).reshape(-1)
    if ids.size and (ids.dtype.kind not in "iu" or ids.min() < 0):
        raise BadInput("vector ids must be non-negative integers (catalog row ids)")
    return ids.astype(np.int64, copy=False)


def _normalised(vectors, dim: int, what: str) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    if v.ndim not in (1, 2) or v.shape[-1] != dim:
        raise BadInput(f"{what} must have shape [{dim}] or [n, {dim}], not {list(v.shape)}")
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise BadInput(f"{what} must be finite and non-zero")
    return v / norms


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values: np.unique is ~10x slower than this on numpy 2.4 (it hashes first)."""
    a = np.sort(a)
    return a[np.concatenate([[True], a[1:] != a[:-1]])] if len(a) else a


def _prepared(ids, vectors, dim: int) -> tuple[np.ndarray, np.ndarray]:
    ids, vectors = _as_ids(ids), _normalised(vectors, dim, "vectors").reshape(-1, dim)
    if len(ids) != len(vectors):
        raise BadInput(f"{len(ids)} ids for {len(vectors)} vectors")
    if len(_unique(ids)) < len(ids):  # duplicates in one batch: the last one wins, as row by row
        keep = np.sort(len(ids) - 1 - np.unique(ids[::-1], return_index=True)[1])
        ids, vectors = ids[keep], vectors[keep]
    return ids, vectors


class ExactIndex:
    """Brute force over a float32 matrix, kept compact: remove moves the last row into the gap."""

    kind = "exact"
    BLOCK_BYTES = 256 << 20  # bounds the [queries, rows] score matrix of a batch search

    def __init__(self, dim: int, *, model: str = "", capacity: int = 1024):
        self.dim, self.model = int(dim), model
        self._vectors = np.empty((max(1, capacity), self.dim), np.float32)
        self._ids = np.empty(max(1, capacity), np.int64)
        self._n = 0
        self._row: dict[int, int] = {}
        self._table: np.ndarray | None = None  # id -> row (-1: none) for filters, built when first needed
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return self._n

    def __contains__(self, id: object) -> bool:
        return int(id) in self._row

    def ids(self) -> np.ndarray:
        with self._lock:
            return np.sort(self._ids[:self._n])

    def add(self, ids, vectors) -> None:
        self._add_prepared(*_prepared(ids, vectors, self.dim))

    def _add_prepared(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        with self._lock:
            rows = np.fromiter((self._row.get(i, -1) for i in ids.tolist()), np.int64, len(ids))
            old = rows >= 0
            self._vectors[rows[old]] = vectors[old]
            new_ids, end = ids[~old], self._n + int((~old).sum())
            if end > len(self._ids):  # grow by half, so appending one at a time stays amortised O(1)
                capacity = max(end, len(self._ids) * 3 // 2)
                self._vectors = np.concatenate([self._vectors[:self._n],
                                                np.empty((capacity - self._n, self.dim), np.float32)])
                self._ids = np.concatenate([self._ids[:self._n], np.empty(capacity - self._n, np.int64)])
            self._vectors[self._n:end] = vectors[~old]
            self._ids[self._n:end] = new_ids
            self._row.update(zip(new_ids.tolist(), range(self._n, end)))
            self._n = end
            self._table = self._table if len(new_ids) == 0 else None

    def remove(self, ids) -> None:
        """Unknown ids are ignored, so syncing with the catalog is idempotent."""
        with self._lock:
            for i in _as_ids(ids).tolist():
                row = self._row.pop(i, None)
                if row is None:
                    continue
                last = self._n = self._n - 1
                if row != last:
                    self._vectors[row], self._ids[row] = self._vectors[last], self._ids[last]
                    self._row[int(self._ids[row])] = row
                self._table = None

    def rows_of(self, allowed) -> np.ndarray:
        """Rows of the live ids among `allowed`, sorted; duplicates and unknown ids are fine."""
        allowed, ids = _as_ids(allowed), self._ids[:self._n]
        # catalog row ids are dense: a lookup table is ~100x faster than a dict lookup per id, and
        # rebuilding it after a change costs ~3 ms per million ids. Sparse huge ids use the dict.
        if self._table is None and self._n and ids.max() < 4 * self._n + (1 << 20):
            self._table = np.full(int(ids.max()) + 1, -1, np.int64)
            self._table[ids] = np.arange(self._n)
        if self._table is not None:
            rows = self._table[allowed[allowed < len(self._table)]]
        else:
            rows = np.fromiter((self._row.get(i, -1) for i in allowed.tolist()), np.int64, len(allowed))
        return _unique(rows[rows >= 0])

    def search(self, query, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        q = _normalised(query, self.dim, "query")
        with self._lock:
            ids, scores = self.search_rows(q.reshape(-1, self.dim), k,
                                           None if allowed is None else self.rows_of(allowed))
        return (ids[0], scores[0]) if q.ndim == 1 else (ids, scores)

    def search_rows(self, q: np.ndarray, k: int, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top k, best first, of normalised queries [nq, dim] over all rows or the given ones."""
        m = self._n if rows is None else len(rows)
        k = max(0, min(int(k), m))
        if k == 0:
            return np.empty((len(q), 0), np.int64), np.empty((len(q), 0), np.float32)
        # gathering a few rows beats a full matvec; for most of the index, score all and pick columns
        subset = rows is not None and m < self._n // 2
        matrix = self._vectors[rows] if subset else self._vectors[:self._n]
        block = max(1, self.BLOCK_BYTES // (4 * len(matrix)))
        out_ids, out_scores = np.empty((len(q), k), np.int64), np.empty((len(q), k), np.float32)
        for start in range(0, len(q), block):
            s = q[start:start + block] @ matrix.T
            if rows is not None and not subset:
                s = s[:, rows]
            top = np.argpartition(-s, k - 1, axis=1)[:, :k] if k < m else np.tile(np.arange(m), (len(s), 1))
            top_scores = np.take_along_axis(s, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            out_scores[start:start + block] = np.take_along_axis(top_scores, order, axis=1)
            out_ids[start:start + block] = self._ids[top if rows is None else rows[top]]
        return out_ids, out_scores

    def save(self, folder, model: str | None = None) -> None:
        with self._lock:
            self.model = self.model if model is None else model
            ids, vectors = self._ids[:self._n], self._vectors[:self._n]

            def write(tmp: Path) -> None:
                np.save(tmp / "ids.npy", ids, allow_pickle=False)
                np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
            _save_version(Path(folder), _manifest(self, ids), write)

    @classmethod
    def load(cls, folder, **params) -> ExactIndex:
        version, manifest = _read_checked(Path(folder), cls.kind, ["ids.npy", "vectors.npy"])
        ids = _load_ids(version, manifest)
        vectors = _load_array(version / "vectors.npy", np.float32, (len(ids), manifest["dim"]))
        index = cls(manifest["dim"], model=manifest.get("model", ""), capacity=len(ids), **params)
        index._add_prepared(ids, vectors)
        return index


class HnswIndex:
    """An hnswlib graph (space "ip") for large indexes, scanning exactly where that is cheaper."""

    kind = "hnsw"
    HEADER = struct.Struct("<QQQQQQiIQQQdQ")  # the header hnswlib's saveIndex writes (0.6 to 0.8)

    def __init__(self, dim: int, *, model: str = "", M: int = 16, ef_construction: int = 128,
                 ef_search: int = 96, exact_threshold: int = 5000, filter_exact_fraction: float = 0.02,
                 filter_exact_count: int = 5000, num_threads: int = -1, capacity: int = 1024,
                 seed: int = 100):
        try:
            import hnswlib
        except ImportError:
            raise MissingExtra("hnswlib", "hnsw") from None
        self.dim, self.model = int(dim), model
        self.M, self.ef_construction, self.ef_search = M, ef_construction, ef_search
        self.exact_threshold, self.num_threads = exact_threshold, num_threads
        self.filter_exact_fraction, self.filter_exact_count = filter_exact_fraction, filter_exact_count
        self._exact = ExactIndex(self.dim, capacity=capacity)  # the side copy of the live vectors
        self._lock = self._exact._lock
        self._graph = hnswlib.Index(space="ip", dim=self.dim)
        # Removed ids stay in the graph, marked deleted (they still route searches); re-adding one
        # unmarks and updates it. Their slots are not reused (allow_replace_deleted): a catalog rarely
        # deletes, and a rebuild from the catalog compacts.
        self._graph.init_index(max(1, capacity), M=M, ef_construction=ef_construction, random_seed=seed)
        self._max_id = -1  # bounds the labels the filter callback can be asked about

    def __len__(self) -> int:
        return len(self._exact)

    def __contains__(self, id: object) -> bool:
        return id in self._exact

    def ids(self) -> np.ndarray:
        return self._exact.ids()

    def add(self, ids, vectors) -> None:
        ids, vectors = _prepared(ids, vectors, self.dim)
        with self._lock:
            # ids not live may be new: room for all of them (a removed one re-added needs none)
            needed = self._graph.get_current_count() + sum(i not in self._exact for i in ids.tolist())
            if needed > self._graph.get_max_elements():
                self._graph.resize_index(max(needed, self._graph.get_max_elements() * 3 // 2))
            self._graph.add_items(vectors, ids, num_threads=self.num_threads)
            self._exact._add_prepared(ids, vectors)
            self._max_id = max(self._max_id, int(ids.max(initial=-1)))

    def remove(self, ids) -> None:
        with self._lock:
            ids = [i for i in _as_ids(ids).tolist() if i in self._exact]
            for i in ids:
                self._graph.mark_deleted(i)
            self._exact.remove(ids)

    def search(self, query, k: int, allowed=None) -> tuple[np.ndarray, np.ndarray]:
        """Best first. Exact below `exact_threshold` vectors, or when `allowed` holds fewer than
        `filter_exact_fraction` of them or `filter_exact_count` ids; else the graph, with ef =
        max(2k, ef_search). A scan costs ~0.2-1.6 µs per allowed id (memory bound; more when the
        machine is busy), a filtered walk ~0.2-0.4 ms / allowed fraction (bench/vectors_scale.py on
        75k MiniLM vectors), so they cross near 10-40 sqrt(n) allowed ids: 5k at 75k, 20k at 1M."""
        q = _normalised(query, self.dim, "query")
        single, q = q.ndim == 1, q.reshape(-1, self.dim)
        with self._lock:
            n, allowed = len(self), None if allowed is None else _as_ids(allowed)
            m = n if allowed is None else min(n, len(allowed))  # an upper bound: saves a lookup per id
            exact = n < self.exact_threshold or (
                allowed is not None and (m < self.filter_exact_fraction * n or m < self.filter_exact_count))
            result = None
            if not exact and min(k, m) > 0:
                result = self._graph_search(q, min(k, m), allowed)
            if result is None:  # the exact path, or the graph found fewer than k
                result = self._exact.search_rows(q, k, None if allowed is None else self._exact.rows_of(allowed))
        return (result[0][0], result[1][0]) if single else result

    def _graph_search(self, q: np.ndarray, k: int, allowed: np.ndarray | None):
        self._graph.set_ef(max(2 * k, self.ef_search))
        try:
            if allowed is None:
                labels, distances = self._graph.knn_query(q, k=k, num_threads=self.num_threads)
            else:  # the callback holds the GIL: more threads would only queue for it
                labels, distances = self._graph.knn_query(q, k=k, num_threads=1, filter=self._filter(allowed))
        except RuntimeError:  # fewer than k reachable: deletes cut the graph, or the filter is too strict
            return None
        return labels.astype(np.int64), (1.0 - distances).astype(np.float32)

    def _filter(self, allowed: np.ndarray):
        # called once per visited live node: bytearray.__getitem__ is the cheapest callable (no Python
        # frame); hnswlib checks deletion first, so labels never exceed _max_id. Sparse huge ids: a set.
        top = max(self._max_id, int(allowed.max(initial=0)))
        if top >= 1 << 27:
            return set(allowed.tolist()).__contains__
        mask = bytearray(top + 1)
        np.frombuffer(mask, np.uint8)[allowed] = 1
        return mask.__getitem__

    def save(self, folder, model: str | None = None) -> None:
        with self._lock:
            self.model = self.model if model is None else model
            ids = self._exact._ids[:len(self)]

            def write(tmp: Path) -> None:
                self._graph.save_index(str(tmp / "index.bin"))
                np.save(tmp / "ids.npy", ids, allow_pickle=False)
            _save_version(Path(folder), _manifest(self, ids, M=self.M, ef_construction=self.ef_construction,
                                                  ef_search=self.ef_search), write)

    @classmethod
    def load(cls, folder, **params) -> HnswIndex:
        version, manifest = _read_checked(Path(folder), cls.kind, ["ids.npy", "index.bin"])
        ids, path = _load_ids(version, manifest), version / "index.bin"
        labels, deleted, vectors = cls._read_level0(path, manifest)
        slots = np.flatnonzero(~deleted)  # live slots, then put in ids.npy's order: the rows saved
        order = np.argsort(labels[slots])
        at = np.searchsorted(labels[slots][order], ids.astype(np.uint64))
        if len(slots) != len(ids) or not np.array_equal(labels[slots[order[np.minimum(at, len(ids) - 1)]]], ids):
            raise IndexCorrupt(f"{path}: its live labels differ from ids.npy")
        slots = slots[order[at]]
        params = {"ef_search": manifest.get("ef_search", 96), **params}
        index = cls(manifest["dim"], model=manifest.get("model", ""), M=manifest["M"],
                    ef_construction=manifest["ef_construction"], capacity=1, **params)
        graph = type(index._graph)(space="ip", dim=index.dim)
        try:
            graph.load_index(str(path), max_elements=0)
        except RuntimeError as e:
            raise IndexCorrupt(f"{path}: hnswlib cannot read it: {e}") from None
        index._graph = graph
        index._exact._add_prepared(ids, vectors[slots])
        index._max_id = int(ids.max(initial=-1))
        return index

    @classmethod
    def _read_level0(cls, path: Path, manifest: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, deleted flags and vectors read straight from the file's level-0 block: get_items
        would take ~40 µs a vector, and this also checks that the file is the graph the manifest says."""
        with open(path, "rb") as f:
            head = f.read(cls.HEADER.size)
        if len(head) < cls.HEADER.size:
            raise IndexCorrupt(f"{path}: truncated header")
        offset0, _, count, per_item, label_at, data_at, _, _, max_m, max_m0, m, _, ef_c = cls.HEADER.unpack(head)
        dim, want_m = manifest["dim"], manifest["M"]
        if (offset0, data_at, label_at, per_item, max_m, max_m0, m, ef_c) != (
                0, 4 + 4 * max_m0, data_at + 4 * dim, label_at + 8, want_m, 2 * want_m, want_m,
                manifest["ef_construction"]):
            raise IndexCorrupt(f"{path}: header does not match the manifest's dim, M, ef_construction")
        if path.stat().st_size < cls.HEADER.size + count * per_item:
            raise IndexCorrupt(f"{path}: truncated")
        if count == 0:
            return np.empty(0, np.uint64), np.empty(0, bool), np.empty((0, dim), np.float32)
        level0 = np.memmap(path, np.uint8, "r", offset=cls.HEADER.size, shape=(count, per_item))
        labels = np.array(level0[:, label_at:label_at + 8]).view("<u8").ravel()
        deleted = (np.array(level0[:, 2]) & 1).astype(bool)  # DELETE_MARK, in the link-list header
        return labels, deleted, level0[:, data_at:label_at].view("<f4")


KINDS: dict[str, type] = {"exact": ExactIndex, "hnsw": HnswIndex}


def _manifest(index, ids: np.ndarray, **extra) -> dict:
    return {"format": FORMAT, "kind": index.kind, "dim": index.dim, "count": len(ids),
            "ids_sha256": _ids_checksum(ids), "model": index.model, **extra}


def _ids_checksum(ids: np.ndarray) -> str:
    return hashlib.sha256(np.sort(ids).astype("<i8").tobytes()).hexdigest()


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save_version(folder: Path, manifest: dict, write) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tag = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    tmp, version, pointer = folder / f".tmp-{tag}", folder / f"v-{tag}", folder / f".CURRENT-{tag}"
    tmp.mkdir()
    try:
        write(tmp)
        files = {p.name: {"bytes": p.stat().st_size, "sha256": _file_sha256(p)} for p in sorted(tmp.iterdir())}
        manifest = {**manifest, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        for p in [*tmp.iterdir(), tmp]:
            _fsync(p)
        os.rename(tmp, version)
        pointer.write_text(version.name + "\n", encoding="utf-8")
        _fsync(pointer)
        os.replace(pointer, folder / "CURRENT")  # the commit point
        _fsync(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(version, ignore_errors=True)
        pointer.unlink(missing_ok=True)
        raise
    for old in folder.iterdir():  # earlier versions, and what crashed saves left
        if old.name != version.name and old.name.startswith(("v-", ".tmp-", ".CURRENT-")):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)


def _read_checked(folder: Path, kind: str | None, names: list[str]) -> tuple[Path, dict]:
    """The live version folder and its manifest, once the manifest and the named files check out."""
    try:
        name = (folder / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise IndexMissing(f"no saved vector index in {folder}") from None
    version = folder / name
    if not name.startswith("v-") or "/" in name or not version.is_dir():
        raise IndexCorrupt(f"{folder}/CURRENT names {name!r}, which is not a saved version")
    try:
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{version}/manifest.json is unreadable: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexCorrupt(f"{version}/manifest.json is not a format {FORMAT} vector index manifest")
    if manifest.get("kind") not in KINDS or kind not in (None, manifest["kind"]):
        raise IndexCorrupt(f"{version} holds a {manifest.get('kind')!r} index, not {kind or 'a known kind'}")
    for key in ("dim", "count") + (("M", "ef_construction") if manifest["kind"] == "hnsw" else ()):
        if type(manifest.get(key)) is not int or manifest[key] < 0:
            raise IndexCorrupt(f"{version}/manifest.json: bad {key!r}")
    files = manifest.get("files") or {}
    for name in names:
        path, want = version / name, files.get(name) or {}
        if not path.is_file() or path.stat().st_size != want.get("bytes") or _file_sha256(path) != want.get("sha256"):
            raise IndexCorrupt(f"{path} is missing, truncated or altered since it was saved")
    return version, manifest


def _load_array(path: Path, dtype, shape: tuple) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise IndexCorrupt(f"{path}: {e}") from None
    if array.dtype != dtype or array.shape != shape:
        raise IndexCorrupt(f"{path} holds {array.dtype} {array.shape}, not {np.dtype(dtype)} {shape}")
    return array


def _load_ids(version: Path, manifest: dict) -> np.ndarray:
    ids = _load_array(version / "ids.npy", np.int64, (manifest["count"],))
    if _ids_checksum(ids) != manifest.get("ids_sha256") or len(_unique(ids)) != len(ids):
        raise IndexCorrupt(f"{version}/ids.npy does not match the manifest's checksum")
    return ids
