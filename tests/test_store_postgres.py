"""What is PostgreSQL's own in the PostgreSQL catalog (the shared behaviour is in test_store_contract.py):
the connection pool across threads, concurrent writers from several stores, tsquery safety, the
vocabulary behind spelling corrections, migrations under concurrency, pgvector k-NN, secrets in URLs.

Runs on the throwaway server of tests/pg.py; skipped where none can be started, unless
PAPERSIFT_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import datetime as dt
import os
import threading

import numpy as np
import pytest

from papersift.errors import StoreError
from papersift.models import Paper
from papersift.store import open_store


@pytest.fixture
def url():
    import pg

    try:
        return pg.new_database()
    except (pg.PostgresUnavailable, ImportError) as e:
        if os.environ.get("PAPERSIFT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (PAPERSIFT_REQUIRE_POSTGRES=1) but: {e}")
        pytest.skip(f"no PostgreSQL here: {e}")


@pytest.fixture
def db(url):
    store = open_store(url, migrate=True)
    yield store
    store.close()


def paper(n: int, **kw) -> Paper:
    base = dict(arxiv_id=f"2401.{n:05d}", version=1, title=f"Paper number {n}", abstract=f"Abstract {n}.",
                authors=(f"Author {n % 7}", "Alan Turing"), categories=("cs.CL",), listed=dt.date(2024, 1, 3),
                source="test")
    base.update(kw)
    return Paper(**base)


def _run_threads(target, args_list) -> list[BaseException]:
    errors: list[BaseException] = []

    def wrap(*args):
        try:
            target(*args)
        except BaseException as e:  # noqa: BLE001 - collected and asserted on by the caller
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=a) for a in args_list]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_the_pool_serves_more_threads_than_it_has_connections(url):
    from papersift.store.postgres import PostgresStore

    store = PostgresStore(url, pool_size=3)
    try:
        store.migrate()
        store.upsert_papers([paper(n) for n in range(1, 21)])
        seen: list[int] = []

        def read(k):
            for _ in range(20):
                seen.append(len(store.papers_by_author("Alan Turing")))
                store.get_paper(f"2401.{(k % 20) + 1:05d}")

        assert _run_threads(read, [(k,) for k in range(12)]) == []
        assert seen == [20] * 240
        stats = store._pool.get_stats()
        assert stats["pool_max"] == 3 and stats.get("requests_num", 0) >= 480
    finally:
        store.close()


def test_concurrent_upserts_from_several_stores_lose_nothing(url):
    """Four workers (one store, so one pool, each), overlapping batches: every paper once, ids unique, and
    every batch a change_seq of its own, rising in commit order, so a later sync misses nothing."""
    stores = [open_store(url, migrate=True) for _ in range(4)]
    try:
        def work(store, offset):
            for start in range(0, 300, 25):
                store.upsert_papers([paper(n) for n in range(start + offset, start + offset + 40)])
                store.sync_fulltext()

        assert _run_threads(work, [(s, k * 7) for k, s in enumerate(stores)]) == []
        expected = {n for k in range(4) for s in range(0, 300, 25) for n in range(s + k * 7, s + k * 7 + 40)}
        db = stores[0]
        assert db.count_papers() == len(expected)
        ids = [p.id for p in db.iter_papers()]
        assert len(ids) == len(set(ids)) == len(expected)
        assert {p.arxiv_id for p in db.iter_papers()} == {f"2401.{n:05d}" for n in expected}
        db.sync_fulltext()
        assert len(db.search_fulltext("number", limit=10_000)) == len(expected)  # every paper indexed once
        assert db.stats().authors == 8
    finally:
        for s in stores:
            s.close()


HOSTILE = ['"', "NEAR(", "*", "AND", "OR NOT", "'; DROP TABLE papers; --", "x" * 10_000, "(((", "ünïcödé ∑",
           "'", "\\", "a:*", "!attention", "attention & | <-> !", "'attention':*", "attention:A", "-attention",
           '"unbalanced phrase', "or", "\x00", "", "   ", "a" * 3000 + "*", "$$; SELECT 1; $$", "%s %(x)s {}"]


def test_hostile_queries_are_answered_and_harm_nothing(db):
    db.upsert_papers([paper(1, title="Attention is all you need"), paper(2, title="Optimisation of attention")])
    db.sync_fulltext()
    for q in HOSTILE:
        db.search_fulltext(q)  # answered, never an error
        db.spelling_corrections(q)
    assert db.count_papers() == 2
    assert len(db.search_fulltext("attention")) == 2
    assert len(db.search_fulltext("'attention':*")) == 2  # the words inside are searched for
    assert [p for p, _ in db.search_fulltext("attention need")][0] == db.get_paper("2401.00001").id


def test_fulltext_ranks_title_over_abstract_over_authors(db):
    db.upsert_papers([paper(1, title="Plain", abstract="Zebra stripes.", authors=("Ann Other",)),
                      paper(2, title="Zebra crossings", abstract="Roads.", authors=("Ann Other",)),
                      paper(3, title="Plain too", abstract="Roads.", authors=("Zebra Jones",))])
    db.sync_fulltext()
    order = [db.get_papers([pid])[0].arxiv_id for pid, _ in db.search_fulltext("zebra")]
    assert order == ["2401.00002", "2401.00001", "2401.00003"]
    assert [db.get_papers([p])[0].arxiv_id for p, _ in db.search_fulltext("Über")] == []  # accents fold, no error


def test_spelling_corrections_from_the_vocabulary(db):
    db.upsert_papers([paper(n, title=f"Transformer study {n}", abstract="Vision transformers for images.")
                      for n in range(1, 31)])
    db.sync_fulltext()
    assert db.spelling_corrections("trasformer") == {"trasformer": "transformer"}
    assert db.spelling_corrections("transformer") == {}
    # an update moves the vocabulary's counts: the word is gone from every paper, so no correction to it
    db.upsert_papers([paper(n, version=2, title=f"Graph study {n}", abstract="Graphs.") for n in range(1, 31)])
    db.sync_fulltext()
    assert db.spelling_corrections("trasformer") == {}
    assert db.spelling_corrections("grahps") == {"grahps": "graphs"}


def test_concurrent_migrations_apply_each_once(url):
    stores = [open_store(url) for _ in range(3)]
    try:
        results: list[list[str]] = []
        assert _run_threads(lambda s: results.append(s.migrate()), [(s,) for s in stores]) == []
        applied = [names for names in results if names]
        assert len(applied) == 1 and applied[0][0] == "catalog"
        assert {s.schema_version() for s in stores} == {len(applied[0])}
    finally:
        for s in stores:
            s.close()


def test_vectors_round_trip_exactly_and_hnsw_finds_neighbours(db):
    db.upsert_papers([paper(n) for n in range(1, 201)])
    todo = db.papers_to_embed("m", limit=1000)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((len(todo), 16)).astype(np.float32)
    db.save_embeddings("m", [(pid, seq) for pid, seq, _, _ in todo], vecs)
    ids, matrix = db.load_embeddings("m", 16)
    by_id = dict(zip([t[0] for t in todo], vecs))
    assert np.array_equal(matrix, np.stack([by_id[i] for i in ids.tolist()]))  # bit for bit
    assert np.array_equal(db.paper_embedding("m", todo[5][0], 16), vecs[5])
    db.create_vector_index("m", 16)
    db.create_vector_index("m", 16)  # idempotent
    hits = db.nearest_papers("m", vecs[7], k=5)
    assert hits[0][0] == todo[7][0] and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    with db._connection() as conn:
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = " ".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT paper_id FROM embeddings WHERE model = 'm' "
            "ORDER BY vector::vector(16) <=> %s::real[]::vector(16) LIMIT 5", (vecs[7].tolist(),)))
    assert "embeddings_hnsw_" in plan


def test_an_unreachable_server_is_a_store_error_without_the_password():
    from papersift.store.postgres import PostgresStore

    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://ada:s3cret-pw@127.0.0.1:1/papersift", connect_timeout=2)
    assert "s3cret-pw" not in str(info.value) and "***" in str(info.value)


def test_nul_characters_are_dropped_and_a_reingest_is_unchanged(db):
    """PostgreSQL text cannot hold NUL (SQLite's can): the paper lands without them, and stays unchanged."""
    dirty = paper(1, title="A\x00 title", abstract="Ab\x00stract", authors=("Ada\x00",), signals={"k": "v\x00"})
    assert db.upsert_papers([dirty]).added == 1
    got = db.get_paper("2401.00001")
    assert (got.title, got.abstract, got.authors, dict(got.signals)) == ("A title", "Abstract", ("Ada",), {"k": "v"})
    assert db.upsert_papers([dirty]).unchanged == 1
