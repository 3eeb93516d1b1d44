"""SQLite-only storage behaviour: migrations of an existing catalog, and how much file a vector costs."""

from __future__ import annotations

import numpy as np

import papersift.store.sqlite as sqlite_store
from papersift.models import Paper
from papersift.store import open_store
from papersift.store.migrations import load_migrations

DIM = 384


def _papers(n: int, start: int = 0) -> list[Paper]:
    return [Paper(title=f"Paper {i} on vectors", abstract="An abstract.", doi=f"10.5555/v.{i}")
            for i in range(start, start + n)]


def _vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_an_older_catalog_keeps_its_vectors_through_the_embeddings_table_rewrite(tmp_path, monkeypatch):
    everything = load_migrations("sqlite")
    monkeypatch.setattr(sqlite_store, "load_migrations", lambda backend: [m for m in everything if m[0] <= 7])
    store = open_store(str(tmp_path / "old.db"), migrate=True)
    store.upsert_papers(_papers(50))
    todo = store.papers_to_embed("m", limit=100)
    vectors = _vectors(len(todo), 1)
    store.save_embeddings("m", [(pid, seq) for pid, seq, _, _ in todo], vectors)
    assert "WITHOUT ROWID" in store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'embeddings'").fetchone()[0]

    monkeypatch.setattr(sqlite_store, "load_migrations", lambda backend: everything)
    assert store.migrate() == ["embeddings_rowid"]
    assert "WITHOUT ROWID" not in store.conn.execute("SELECT sql FROM sqlite_master WHERE name = 'embeddings'").fetchone()[0]
    ids, loaded = store.load_embeddings("m", DIM)
    assert ids.tolist() == sorted(pid for pid, _, _, _ in todo)
    assert np.array_equal(loaded, vectors[np.argsort([pid for pid, _, _, _ in todo])])
    # the upsert still replaces a paper's vector instead of adding a second row
    pid, seq = todo[0][0], todo[0][1]
    store.save_embeddings("m", [(pid, seq)], _vectors(1, 2))
    assert store.embedding_models() == {"m": 50}
    assert np.array_equal(store.paper_embedding("m", pid, DIM), _vectors(1, 2)[0])
    store.close()


def test_a_minilm_vector_costs_about_two_kilobytes_of_file(tmp_path):
    """Not a 4 kB overflow page each, as in a WITHOUT ROWID table."""
    store = open_store(str(tmp_path / "size.db"), migrate=True)
    store.upsert_papers(_papers(1000))
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    todo = store.papers_to_embed("all-MiniLM-L6-v2@onnx-int8-tok256-b1", limit=1000)
    store.save_embeddings("all-MiniLM-L6-v2@onnx-int8-tok256-b1", [(pid, seq) for pid, seq, _, _ in todo],
                          _vectors(len(todo), 3))
    grown = store.conn.execute("PRAGMA page_count").fetchone()[0] - pages
    page_size = store.conn.execute("PRAGMA page_size").fetchone()[0]
    assert grown * page_size / 1000 < 2.3 * 1024  # 1,536 bytes of vector, ~2 a page, plus the index
    store.close()


def test_spelling_sees_new_papers_once_the_full_text_is_synced(tmp_path):
    """The vocabulary under each prefix is cached (FTS5 counts a prefix's documents in 6–8 ms); a sync
    of the store's own full-text index clears it."""
    store = open_store(str(tmp_path / "spell.db"), migrate=True)
    store.upsert_papers([Paper(title=f"Transformer study {n}", abstract="Vision transformers for images.",
                               doi=f"10.5555/t.{n}") for n in range(30)])
    store.sync_fulltext()
    assert store.spelling_corrections("grahps") == {}  # nothing like it yet: the "gr" terms are cached
    calls = []
    store.conn.set_trace_callback(calls.append)
    assert store.spelling_corrections("trasformer") == {"trasformer": "transformer"}
    assert store.spelling_corrections("trasformer") == {"trasformer": "transformer"}
    assert sum("papers_fts_vocab" in c for c in calls) == 3  # three prefixes read once, then cached
    store.conn.set_trace_callback(None)
    store.upsert_papers([Paper(title=f"Graph study {n}", abstract="Graphs and graphs.", doi=f"10.5555/g.{n}")
                         for n in range(30)])
    store.sync_fulltext()
    assert store.spelling_corrections("grahps") == {"grahps": "graphs"}
    store.close()


def test_db_compact_gives_back_what_deleted_vectors_took(clean_env, capsys):
    import json

    from papersift.cli import main

    tmp_path = clean_env
    store = open_store(str(tmp_path / "data" / "catalog.db"), migrate=True)
    store.upsert_papers(_papers(1000))
    todo = store.papers_to_embed("old-model", limit=1000)
    store.save_embeddings("old-model", [(pid, seq) for pid, seq, _, _ in todo], _vectors(len(todo), 4))
    store.delete_embeddings("old-model")  # a model switched away from: its pages are free, the file is not smaller
    store.close()
    size = (tmp_path / "data" / "catalog.db").stat().st_size
    assert main(["db", "compact", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bytes_after"] < report["bytes_before"] - 1_000_000  # ~1.5 MB of vectors given back
    assert (tmp_path / "data" / "catalog.db").stat().st_size < size - 1_000_000
    assert open_store(str(tmp_path / "data" / "catalog.db")).count_papers() == 1000
