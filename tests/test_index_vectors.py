"""VectorIndex: one contract suite run against ExactIndex, HnswIndex as configured by default (small
indexes and selective filters scan exactly) and HnswIndex forced onto its graph; then HNSW quality on
20k clustered 384-d vectors, and persistence failures (truncated, altered, crash mid-save)."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from papersift.errors import BadInput, MissingExtra, PapersiftError
from papersift.index.vectors import (
    KINDS,
    ExactIndex,
    HnswIndex,
    IndexCorrupt,
    IndexMissing,
    VectorIndex,
    create_index,
    load_index,
    open_or_none,
)

DIM = 32
VARIANTS = {
    "exact": ("exact", {}),
    "hnsw": ("hnsw", {}),
    "hnsw-graph": ("hnsw", {"exact_threshold": 0, "filter_exact_fraction": 0.0, "filter_exact_count": 0}),
}


def clustered(n: int, dim: int, seed: int, per_cluster: int = 100, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around n / per_cluster random centres: neighbours are close, as in real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // per_cluster), dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(len(centres), size=n)] + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def true_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int, allowed=None) -> np.ndarray:
    if allowed is not None:
        keep = np.isin(ids, allowed)
        vectors, ids = vectors[keep], ids[keep]
    return ids[np.argsort(-(vectors @ query), kind="stable")[:k]]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found.tolist(), truth.tolist())]))


@pytest.fixture(params=list(VARIANTS))
def variant(request):
    return request.param


def make(variant: str, dim: int = DIM) -> VectorIndex:
    kind, params = VARIANTS[variant]
    return create_index(kind, dim, **params)


def reload(variant: str, folder) -> VectorIndex:
    kind, params = VARIANTS[variant]
    return KINDS[kind].load(folder, **params)


@pytest.fixture
def data():
    vectors = clustered(600, DIM, seed=1, per_cluster=30)
    ids = np.arange(600, dtype=np.int64) * 7 + 3  # sparse, like catalog row ids after deletes
    return ids, vectors


@pytest.fixture
def filled(variant, data):
    index = make(variant)
    index.add(*data)
    return index


# --- the contract ---------------------------------------------------------------------------------------

def test_implements_the_protocol(filled, data):
    assert isinstance(filled, VectorIndex)
    assert len(filled) == 600 and filled.dim == DIM
    assert int(data[0][5]) in filled and 4 not in filled
    assert np.array_equal(filled.ids(), np.sort(data[0]))


def test_a_vector_finds_itself_first(filled, data):
    ids, vectors = data
    for row in range(0, 600, 37):
        found, scores = filled.search(vectors[row], 5)
        assert found[0] == ids[row] and scores[0] == pytest.approx(1.0, abs=1e-5)


def test_scores_are_sorted_true_inner_products(variant, filled, data):
    ids, vectors = data
    row_of = {int(i): r for r, i in enumerate(ids)}
    query = clustered(1, DIM, seed=9)[0]
    found, scores = filled.search(query, 20)
    assert found.dtype == np.int64 and scores.dtype == np.float32 and len(found) == 20
    assert np.all(np.diff(scores) <= 1e-6)
    assert np.allclose(scores, [vectors[row_of[int(i)]] @ query for i in found], atol=1e-5)
    if variant != "hnsw-graph":
        assert np.array_equal(found, true_top(vectors, ids, query, 20))


def test_removed_ids_are_never_returned(filled, data):
    ids, vectors = data
    gone = ids[::3]
    filled.remove(gone)
    filled.remove([gone[0], 999_999])  # unknown or already removed: ignored
    assert len(filled) == 600 - len(gone) and int(gone[1]) not in filled
    assert np.array_equal(filled.ids(), np.sort(np.setdiff1d(ids, gone)))
    found, _ = filled.search(vectors[::3][:30], 50)
    assert found.shape == (30, 50) and not np.isin(found, gone).any()


def test_re_adding_an_id_replaces_its_vector(filled, data):
    ids, vectors = data
    filled.add(ids[:2], vectors[[10, 11]])  # ids[0] now holds vectors[10]
    assert len(filled) == 600
    found, scores = filled.search(vectors[0], 600)
    assert ids[0] not in found[:1] and scores[list(found).index(ids[0])] == pytest.approx(vectors[10] @ vectors[0],
                                                                                      abs=1e-5)
    filled.remove(ids[5:6])
    filled.add(ids[5:6], vectors[20:21])  # removed, then back with another vector
    assert int(ids[5]) in filled and len(filled) == 600
    found, scores = filled.search(vectors[20], 2)
    assert set(found) == {ids[5], ids[20]} and scores[1] == pytest.approx(1.0, abs=1e-5)
    filled.add([ids[7], ids[7]], vectors[[1, 2]])  # duplicates in one batch: the last one wins
    assert filled.search(vectors[2], 2)[0].tolist() in ([ids[7], ids[2]], [ids[2], ids[7]])


def test_allowed_filter(variant, filled, data):
    ids, vectors = data
    rng = np.random.default_rng(3)
    allowed = np.concatenate([rng.choice(ids, 200, replace=False), [5, 10**9]])  # and ids not indexed
    queries = clustered(10, DIM, seed=4, per_cluster=30)
    found, _ = filled.search(queries, 10, allowed=allowed)
    assert found.shape == (10, 10) and np.isin(found, allowed).all()
    truth = np.stack([true_top(vectors, ids, q, 10, allowed) for q in queries])
    if variant == "hnsw-graph":
        assert recall(found, truth) >= 0.9
    else:
        assert np.array_equal(found, truth)
    few, scores = filled.search(queries[0], 10, allowed=ids[:3])
    assert sorted(few) == sorted(ids[:3]) and np.all(np.diff(scores) <= 0)
    assert filled.search(queries[0], 10, allowed=np.array([], np.int64))[0].shape == (0,)
    mostly_unknown = np.concatenate([ids[:3], 10**7 + np.arange(50)])  # the graph cannot find 10 of them
    assert sorted(filled.search(queries[0], 10, allowed=mostly_unknown)[0]) == sorted(ids[:3])


def test_huge_sparse_ids(variant, data):
    _, vectors = data
    ids = 10**12 + np.arange(600, dtype=np.int64) * 10**6  # too sparse for a lookup table or byte mask
    index = make(variant)
    index.add(ids, vectors)
    index.remove(ids[:10])
    found, _ = index.search(vectors[:20], 5, allowed=ids[::2])
    assert np.isin(found, ids[10::2]).all()
    assert index.search(vectors[20], 1)[0][0] == ids[20]


def test_k_larger_than_the_index(variant):
    index = make(variant)
    vectors = clustered(5, DIM, seed=5)
    index.add([1, 2, 3, 4, 5], vectors)
    found, scores = index.search(vectors[0], 10)
    assert sorted(found) == [1, 2, 3, 4, 5] and found[0] == 1
    assert index.search(vectors, 10)[0].shape == (5, 5)
    assert index.search(vectors[0], 0)[0].shape == (0,)


def test_empty_index(variant, tmp_path):
    index = make(variant)
    query = clustered(3, DIM, seed=6)
    assert len(index) == 0 and index.ids().shape == (0,)
    assert index.search(query[0], 10)[0].shape == (0,)
    assert index.search(query, 10)[1].shape == (3, 0)
    index.save(tmp_path / "ix")
    again = reload(variant, tmp_path / "ix")
    assert len(again) == 0 and again.search(query[0], 3)[0].shape == (0,)


def test_batch_queries_equal_single_queries(filled, data):
    queries = clustered(25, DIM, seed=7, per_cluster=30)
    allowed = data[0][::2]
    for kwargs in ({}, {"allowed": allowed}):
        batch_ids, batch_scores = filled.search(queries, 8, **kwargs)
        for q, bi, bs in zip(queries, batch_ids, batch_scores):
            single_ids, single_scores = filled.search(q, 8, **kwargs)
            assert np.array_equal(bi, single_ids) and np.allclose(bs, single_scores, atol=1e-6)


def test_save_load_round_trip(variant, filled, data, tmp_path):
    ids, vectors = data
    filled.remove(ids[:50])
    filled.add(ids[:10], vectors[100:110])  # deleted then revived: the graph must keep it live
    queries = clustered(20, DIM, seed=8, per_cluster=30)
    before = filled.search(queries, 10), filled.search(queries, 10, allowed=ids[::4])
    filled.save(tmp_path / "ix", model="minilm-l6-v2")
    manifest = json.loads(next((tmp_path / "ix").glob("v-*/manifest.json")).read_text())
    assert manifest["count"] == 560 and manifest["dim"] == DIM and manifest["model"] == "minilm-l6-v2"
    again = reload(variant, tmp_path / "ix")
    assert type(again) is type(filled) and again.model == "minilm-l6-v2" and len(again) == 560
    assert np.array_equal(again.ids(), filled.ids())
    after = again.search(queries, 10), again.search(queries, 10, allowed=ids[::4])
    for (b_ids, b_scores), (a_ids, a_scores) in zip(before, after):
        assert np.array_equal(b_ids, a_ids) and np.allclose(b_scores, a_scores)
    assert type(load_index(tmp_path / "ix", **VARIANTS[variant][1])) is type(filled)
    again.add([123_456], vectors[:1])  # still writable after a load
    again.remove(ids[60:70])
    assert 123_456 in again and len(again) == 551
    assert set(again.search(vectors[0], 3)[0][:2]) >= {123_456}


def _saved(variant, data, folder: Path) -> Path:
    index = make(variant)
    index.add(*data)
    index.save(folder, model="m")
    return next(folder.glob("v-*"))


def _rewrite_manifest(version: Path, **changes) -> None:
    path = version / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _truncate(version: Path) -> None:
    name = max(version.iterdir(), key=lambda p: p.stat().st_size).name  # index.bin or vectors.npy
    path = version / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(version: Path) -> None:
    path = max(version.iterdir(), key=lambda p: p.stat().st_size)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _other_ids_with_matching_file_hash(version: Path) -> None:
    """ids.npy swapped and its file entry updated: only the checksum of the ids catches it."""
    import hashlib
    ids = np.load(version / "ids.npy")
    np.save(version / "ids.npy", ids + 1, allow_pickle=False)
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["files"]["ids.npy"]["sha256"] = hashlib.sha256((version / "ids.npy").read_bytes()).hexdigest()
    (version / "manifest.json").write_text(json.dumps(manifest))


DAMAGE = {
    "truncated data file": _truncate,
    "flipped byte": _flip_a_byte,
    "truncated ids": lambda v: (v / "ids.npy").write_bytes((v / "ids.npy").read_bytes()[:100]),
    "missing ids": lambda v: (v / "ids.npy").unlink(),
    "wrong ids checksum": lambda v: _rewrite_manifest(v, ids_sha256="0" * 64),
    "other ids, file hash updated": _other_ids_with_matching_file_hash,
    "wrong count": lambda v: _rewrite_manifest(v, count=599),
    "wrong dim": lambda v: _rewrite_manifest(v, dim=DIM + 1),
    "manifest not json": lambda v: (v / "manifest.json").write_text("{not json"),
    "wrong kind": lambda v: _rewrite_manifest(v, kind="exact" if "index.bin" in os.listdir(v) else "hnsw"),
    "dangling CURRENT": lambda v: (v.parent / "CURRENT").write_text("v-gone\n"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_files_raise_index_corrupt(variant, data, tmp_path, damage):
    version = _saved(variant, data, tmp_path / "ix")
    DAMAGE[damage](version)
    with pytest.raises(IndexCorrupt) as caught:
        reload(variant, tmp_path / "ix")
    assert isinstance(caught.value, PapersiftError) and "rebuild" in caught.value.hint
    assert open_or_none(tmp_path / "ix", **VARIANTS[variant][1]) is None


def test_open_or_none(variant, data, tmp_path):
    params = VARIANTS[variant][1]
    with pytest.raises(IndexMissing):
        reload(variant, tmp_path / "nothing")
    assert open_or_none(tmp_path / "nothing") is None
    _saved(variant, data, tmp_path / "ix")
    assert len(open_or_none(tmp_path / "ix", expect_model="m", **params)) == 600
    assert open_or_none(tmp_path / "ix", expect_model="another model", **params) is None


def test_a_crash_mid_save_keeps_the_previous_index(variant, filled, data, tmp_path, monkeypatch):
    ids, vectors = data
    folder = tmp_path / "ix"
    filled.save(folder, model="m")
    expected = filled.search(vectors[:5], 10)
    filled.remove(ids[:300])

    def crash(*args):
        raise OSError("disk died")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        filled.save(folder, model="m")
    monkeypatch.undo()
    again = reload(variant, folder)
    assert len(again) == 600
    got = again.search(vectors[:5], 10)
    assert np.array_equal(got[0], expected[0]) and np.allclose(got[1], expected[1])
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["CURRENT", "v"]  # nothing left over
    filled.save(folder)  # the next save works and replaces it
    assert len(reload(variant, folder)) == 300 and len(list(folder.glob("v-*"))) == 1


def test_concurrent_adds_removes_and_searches(variant, filled, data):
    ids, vectors = data
    extra = clustered(1_000, DIM, seed=10)
    errors = []

    def write():
        for start in range(0, 1_000, 20):
            filled.add(10_000 + np.arange(start, start + 20), extra[start:start + 20])
            filled.remove(ids[start // 20: start // 20 + 1])

    def read():
        try:
            for i in range(150):
                found, scores = filled.search(vectors[i % 600], 10, allowed=None if i % 2 else ids[::2])
                assert len(found) == 10 and np.all(np.diff(scores) <= 1e-6)
        except Exception as e:  # handed to the main thread, which asserts
            errors.append(e)
    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(filled) == 600 + 1_000 - 50
    found, _ = filled.search(extra[:50], 1)
    assert np.mean(found[:, 0] == 10_000 + np.arange(50)) >= 0.95


def test_without_hnswlib_the_error_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "hnswlib", None)  # as if not installed
    with pytest.raises(MissingExtra) as caught:
        create_index("hnsw", 8)
    assert "pip install" in caught.value.hint


def test_bad_input_is_rejected():
    index = create_index("exact", 4)
    with pytest.raises(BadInput):
        create_index("annoy", 4)
    with pytest.raises(BadInput):
        index.add([1], np.ones((1, 5)))
    with pytest.raises(BadInput):
        index.add([-1], np.ones((1, 4)))
    with pytest.raises(BadInput):
        index.add([1, 2], np.ones((1, 4)))
    with pytest.raises(BadInput):
        index.add([1], np.zeros((1, 4)))
    with pytest.raises(BadInput):
        index.search(np.ones(3), 1)


# --- HNSW quality on realistic sizes --------------------------------------------------------------------

@pytest.fixture(scope="module")
def big():
    vectors = clustered(20_000, 384, seed=11, per_cluster=1000, spread=1.5)  # recall 0.93 at ef 32: not easy
    ids = np.arange(20_000, dtype=np.int64) * 2 + 1
    hnsw = HnswIndex(384)
    hnsw.add(ids, vectors)
    exact = ExactIndex(384)
    exact.add(ids, vectors)
    rng = np.random.default_rng(12)  # queries: noisy copies of indexed vectors
    queries = vectors[rng.choice(20_000, 200, replace=False)] + 0.5 * rng.standard_normal((200, 384)) / np.sqrt(384)
    return hnsw, exact, queries.astype(np.float32), ids


def _forbid(monkeypatch, obj, name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} should not be used here")
    monkeypatch.setattr(obj, name, fail)


def test_hnsw_graph_recall(big, monkeypatch):
    hnsw, exact, queries, _ = big
    _forbid(monkeypatch, hnsw._exact, "search_rows")  # proves the graph answered
    found, _ = hnsw.search(queries, 10)
    assert recall(found, exact.search(queries, 10)[0]) >= 0.95


def test_hnsw_recall_with_a_non_selective_filter(big, monkeypatch):
    hnsw, exact, queries, ids = big
    allowed = np.random.default_rng(13).choice(ids, len(ids) // 2, replace=False)
    _forbid(monkeypatch, hnsw._exact, "search_rows")
    found, _ = hnsw.search(queries[:100], 10, allowed=allowed)
    assert np.isin(found, allowed).all()
    assert recall(found, exact.search(queries[:100], 10, allowed=allowed)[0]) >= 0.95


def test_hnsw_very_selective_filter_is_exact(big, monkeypatch):
    hnsw, exact, queries, ids = big
    allowed = np.random.default_rng(14).choice(ids, len(ids) // 200, replace=False)
    _forbid(monkeypatch, hnsw, "_graph_search")
    found, scores = hnsw.search(queries, 10, allowed=allowed)
    truth, true_scores = exact.search(queries, 10, allowed=allowed)
    assert recall(found, truth) == 1.0 and np.allclose(scores, true_scores, atol=1e-6)


def test_hnsw_incremental_adds_are_found():
    vectors = clustered(4_000, 64, seed=15, per_cluster=40)
    index = HnswIndex(64, exact_threshold=0, capacity=100)  # small capacity: adds must resize
    index.add(np.arange(3_000), vectors[:3_000])
    index.add(np.arange(3_000, 3_900), vectors[3_000:3_900])
    for i in range(3_900, 4_000):
        index.add([i], vectors[i:i + 1])
    found, _ = index.search(vectors[3_000:], 1)
    assert np.mean(found[:, 0] == np.arange(3_000, 4_000)) >= 0.99
    # removed ids leave the results; re-added they come back without a new slot
    index.remove(np.arange(200))
    assert not np.isin(index.search(vectors[:200], 10)[0], np.arange(200)).any()
    before = index._graph.get_current_count()
    index.add(np.arange(100), vectors[100:200])  # back, with other vectors
    index.add(np.arange(10_000, 10_100), vectors[:100])
    assert index._graph.get_current_count() == before + 100 and len(index) == 4_000
    assert np.mean(index.search(vectors[100:200], 1)[0][:, 0] == np.arange(100)) >= 0.99
    assert np.mean(index.search(vectors[:100], 1)[0][:, 0] == 10_000 + np.arange(100)) >= 0.99
