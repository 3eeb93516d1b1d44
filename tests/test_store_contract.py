"""The Store contract: every backend must pass these. Add a backend to BACKENDS to run it here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest

from papersift.errors import BadInput, ConfigError, Conflict, NotFound, StoreError
from papersift.models import Paper
from papersift.store import open_store


def _sqlite(tmp_path):
    return open_store(str(tmp_path / "contract.db"), migrate=True)


def _postgresql(tmp_path):
    """A fresh database on the session's throwaway PostgreSQL (tests/pg.py). Skipped where no server can
    be started here, unless PAPERSIFT_REQUIRE_POSTGRES=1, where that is a failure."""
    import os

    import pg

    try:
        url = pg.new_database()
        return open_store(url, migrate=True)
    except (pg.PostgresUnavailable, ImportError, ConfigError) as e:
        if os.environ.get("PAPERSIFT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (PAPERSIFT_REQUIRE_POSTGRES=1) but: {e}")
        pytest.skip(f"no PostgreSQL here: {e}")


BACKENDS = {"sqlite": _sqlite, "postgresql": _postgresql}


@pytest.fixture(params=sorted(BACKENDS))
def db(request, tmp_path):
    store = BACKENDS[request.param](tmp_path)
    yield store
    store.close()


def paper(n: int = 1, **kw) -> Paper:
    base = dict(
        arxiv_id=f"2401.{n:05d}", version=1, title=f"Paper number {n}", abstract=f"Abstract {n}.",
        authors=(f"Ada Lovelace{n}", "Alan Turing"), categories=("cs.CL", "cs.AI"),
        submitted=dt.date(2024, 1, 2), updated=dt.date(2024, 1, 2), listed=dt.date(2024, 1, 3), source="test",
    )
    base.update(kw)
    return Paper(**base)


def test_migrate_is_idempotent_and_versioned(db):
    version = db.schema_version()
    assert version >= 1
    assert db.migrate() == []
    assert db.schema_version() == version


def test_compact_keeps_every_row(db):
    db.upsert_papers([paper(n) for n in range(1, 21)])
    before, after = db.compact()
    assert before > 0 and after > 0
    assert db.count_papers() == 20 and db.get_papers([p.id for p in db.iter_papers()])[0].title


def test_catalog_id_is_made_once_and_kept(db, tmp_path):
    """Index files record the catalog they were built from (index/lexical.py, index/build.py)."""
    first = db.catalog_id()
    assert isinstance(first, str) and len(first) >= 16
    db.upsert_papers([paper(1)])
    assert db.catalog_id() == first
    (tmp_path / "other").mkdir()
    other = _sqlite(tmp_path / "other")
    try:
        assert other.catalog_id() != first  # another catalog (db migrate-to fills one row by row)
    finally:
        other.close()


def test_upsert_then_read_back_every_field(db):
    p = paper(1, doi="10.1000/xyz1", links={"code": "https://github.com/x/y"}, comment="12 pages",
              journal_ref="J. Test 1", signals={"hf_upvotes": 3}, raw='{"a": 1}')
    result = db.upsert_papers([p])
    assert (result.added, result.updated, result.unchanged) == (1, 0, 0)
    got = db.get_paper("2401.00001")
    assert got.id is not None
    assert dataclasses.replace(got, id=None) == p


def test_reingest_adds_nothing(db):
    papers = [paper(n) for n in range(1, 51)]
    assert db.upsert_papers(papers).added == 50
    again = db.upsert_papers(papers)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 50)
    assert db.count_papers() == 50


def test_new_version_wins_and_keeps_v1_date(db):
    db.upsert_papers([paper(1)])
    v2 = paper(1, version=2, title="Paper number 1, revised", abstract="Better.",
               submitted=dt.date(2024, 2, 1), updated=dt.date(2024, 2, 1), listed=None, categories=())
    assert db.upsert_papers([v2]).updated == 1
    got = db.get_paper("arXiv:2401.00001v1")
    assert (got.version, got.title, got.abstract) == (2, "Paper number 1, revised", "Better.")
    assert got.submitted == dt.date(2024, 1, 2)  # the earliest (v1) date is kept
    assert got.listed == dt.date(2024, 1, 3)
    assert got.categories == ("cs.CL", "cs.AI")  # not wiped by a record that lacks them
    # an older version arriving late changes nothing
    assert db.upsert_papers([paper(1)]).unchanged == 1
    assert db.get_paper("2401.00001").title == "Paper number 1, revised"


def test_same_paper_by_doi_then_title_is_one_row(db):
    # from a BibTeX library: DOI only
    db.upsert_papers([Paper(title="Deep Nets", doi="10.1145/123.456", authors=("Grace Hopper",), source="bibtex")])
    # the arXiv record with the same DOI merges into it
    db.upsert_papers([paper(7, title="Deep Nets", doi="10.1145/123.456", authors=("Grace Hopper",))])
    assert db.count_papers() == 1
    assert db.get_paper("10.1145/123.456").arxiv_id == "2401.00007"
    # no identifiers at all: title + first author, folded (case, accents, punctuation)
    db.upsert_papers([Paper(title="Über Graphs!", authors=("Émile Noether",), source="ris")])
    db.upsert_papers([Paper(title="uber graphs", authors=("E. Noether",), source="bibtex", abstract="x")])
    assert db.count_papers() == 2
    # but a different arXiv id with the same title is a different paper
    db.upsert_papers([paper(8, title="Deep Nets", authors=("Grace Hopper",))])
    assert db.count_papers() == 3


def test_duplicates_inside_one_batch(db):
    result = db.upsert_papers([paper(1), paper(1, version=2, title="v2"), paper(2)])
    assert result.added == 2
    assert db.count_papers() == 2
    assert db.get_paper("2401.00001").title == "v2"


def test_identifier_forms_resolve(db):
    db.upsert_papers([paper(1, doi="10.1000/ABC")])
    db.upsert_papers([Paper(title="Old", arxiv_id="hep-th/9901001", source="t")])
    for ref in ("2401.00001", "2401.00001v3", "arXiv:2401.00001", "https://arxiv.org/abs/2401.00001v1",
                "https://arxiv.org/pdf/2401.00001v1.pdf", "10.1000/abc", "doi:10.1000/abc",
                "https://doi.org/10.1000/ABC"):
        assert db.get_paper(ref).arxiv_id == "2401.00001", ref
    assert db.get_paper("hep-th/9901001v2").title == "Old"
    with pytest.raises(NotFound):
        db.get_paper("2401.99999")
    with pytest.raises(BadInput):
        db.get_paper("not an id")


def test_checkpoint_commits_with_its_batch(db):
    db.upsert_papers([paper(1)], checkpoint=("file:x", "1"))
    assert db.get_checkpoint("file:x") == "1"
    db.clear_checkpoint("file:x")
    assert db.get_checkpoint("file:x") is None


def test_failed_batch_leaves_nothing_behind(db):
    bad = paper(2, title="")  # an invalid paper anywhere in a batch: nothing of the batch is written
    with pytest.raises(BadInput):
        db.upsert_papers([paper(1), bad], checkpoint=("file:y", "2"))
    assert db.count_papers() == 0
    assert db.get_checkpoint("file:y") is None


def test_listing_and_author_queries(db):
    db.upsert_papers([paper(n, listed=dt.date(2024, 1, n)) for n in range(1, 6)])
    got = db.papers_listed(dt.date(2024, 1, 2), dt.date(2024, 1, 4))
    assert [p.arxiv_id for p in got] == ["2401.00004", "2401.00003", "2401.00002"]
    assert len(db.papers_listed(dt.date(2024, 1, 1), dt.date(2024, 1, 31), category="cs.AI")) == 5
    assert db.papers_listed(dt.date(2024, 1, 1), dt.date(2024, 1, 31), category="math.AG") == []
    assert [p.arxiv_id for p in db.papers_by_author("Ada Lovelace3")] == ["2401.00003"]
    assert len(db.papers_by_author("Alan Turing")) == 5
    ids = [p.id for p in db.iter_papers()]
    assert len(ids) == 5 and ids == sorted(ids)
    assert [p.id for p in db.get_papers(ids[::-1])] == ids[::-1]


def test_users_interactions_are_states_and_views_are_events(db):
    db.upsert_papers([paper(1), paper(2)])
    p1 = db.get_paper("2401.00001").id
    ada = db.create_user("ada", "ada@example.org", "hash")
    with pytest.raises(Conflict):
        db.create_user("ADA")
    assert db.get_user("ada@example.org").id == ada.id
    assert db.add_interaction(ada.id, p1, "upvote") is True
    assert db.add_interaction(ada.id, p1, "upvote") is False  # repeating a vote does not count twice
    db.add_interaction(ada.id, p1, "view")
    db.add_interaction(ada.id, p1, "view")
    assert db.interaction_counts(p1) == {"upvote": 1, "save": 0, "view": 2, "dismiss": 0}
    with pytest.raises(BadInput):
        db.add_interaction(ada.id, p1, "like")
    with pytest.raises(NotFound):
        db.add_interaction(ada.id, 999999, "save")
    assert db.remove_interaction(ada.id, p1, "upvote") is True
    assert db.interaction_counts(p1)["upvote"] == 0
    assert [k for _, _, k, _ in db.interactions(user_id=ada.id)] == ["view", "view"]
    db.delete_user(ada.id)
    assert db.interactions() == []
    with pytest.raises(NotFound):
        db.get_user(ada.id)


def test_texts_since_lists_changed_papers_in_change_order(db):
    db.upsert_papers([paper(1), paper(2)])
    first = list(db.texts_since(0))
    assert sorted(r[0] for r in first) == sorted(p.id for p in db.iter_papers())
    mark = max(r[1] for r in first)
    assert list(db.texts_since(mark)) == []
    db.upsert_papers([paper(2, version=2, title="A new title")])
    (row,) = db.texts_since(mark)
    assert row[0] == db.get_paper("2401.00002").id and row[2] == "A new title" and row[1] > mark


def test_co_interactions_count_distinct_readers_and_hide_single_ones(db):
    db.upsert_papers([paper(i) for i in range(1, 5)])
    p1, p2, p3, p4 = (db.get_paper(f"2401.0000{i}").id for i in range(1, 5))
    ada, bob, cy = db.create_user("ada"), db.create_user("bob"), db.create_user("cy")
    for user, papers in ((ada, (p1, p2, p3)), (bob, (p1, p2)), (cy, (p1, p4))):
        for pid in papers:
            db.add_interaction(user.id, pid, "save")
    db.add_interaction(ada.id, p2, "upvote")  # a save and an upvote by one reader count once
    db.add_interaction(cy.id, p3, "view")  # views are not evidence of co-interest
    db.add_interaction(cy.id, p3, "dismiss")
    assert db.co_interactions(p1) == [(p2, 2)]  # p3 and p4: one reader each, not shown
    assert db.co_interactions(p1, min_readers=1) == [(p2, 2), (p3, 1), (p4, 1)]
    assert db.co_interactions(p4) == []


def test_collections_are_private(db):
    db.upsert_papers([paper(1)])
    pid = db.get_paper("2401.00001").id
    ada, bob = db.create_user("ada"), db.create_user("bob")
    c = db.create_collection(ada.id, "to read")
    with pytest.raises(Conflict):
        db.create_collection(ada.id, "to read")
    assert db.add_to_collection(ada.id, c, pid) is True
    assert db.add_to_collection(ada.id, c, pid) is False
    assert [p.id for p in db.collection_papers(ada.id, c)] == [pid]
    assert db.collections(ada.id)[0]["size"] == 1
    for attempt in (lambda: db.collection_papers(bob.id, c), lambda: db.add_to_collection(bob.id, c, pid),
                    lambda: db.remove_from_collection(bob.id, c, pid), lambda: db.delete_collection(bob.id, c)):
        with pytest.raises(NotFound):
            attempt()
    assert db.collections(bob.id) == []
    db.delete_collection(ada.id, c)
    assert db.collections(ada.id) == []


def test_subscriptions(db):
    s = db.upsert_subscription("ada@example.org", "daily", ["cs.CL"])
    assert (s.status, s.categories) == ("pending", ("cs.CL",))
    db.set_subscription_status("ada@example.org", "active")
    s = db.upsert_subscription("ada@example.org", "weekly", ["cs.CL", "cs.IR"])
    assert (s.status, s.frequency, s.confirmed_at is not None) == ("active", "weekly", True)
    assert [x.email for x in db.subscriptions("active")] == ["ada@example.org"]
    with pytest.raises(BadInput):
        db.upsert_subscription("nobody", "daily")
    with pytest.raises(NotFound):
        db.set_subscription_status("ghost@example.org", "active")


def test_stats_and_missing_catalog(db, tmp_path):
    db.upsert_papers([paper(1), paper(2, categories=("math.AG",))])
    s = db.stats()
    assert s.papers == 2 and s.authors == 3
    assert dict(s.by_category) == {"cs.CL": 1, "math.AG": 1}
    empty = open_store(str(tmp_path / "empty.db"))
    with pytest.raises(StoreError):
        empty.stats()


def test_concurrent_writers_lose_nothing(db):
    """Four threads upserting overlapping batches: every paper once, none lost."""
    errors = []

    def work(offset):
        try:
            for start in range(0, 200, 20):
                db.upsert_papers([paper(n) for n in range(start + offset, start + offset + 30)])
        except Exception as e:  # noqa: BLE001 - any failure is collected and asserted on below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k * 5,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert db.count_papers() == len({n for k in range(4) for s in range(0, 200, 20)
                                     for n in range(s + k * 5, s + k * 5 + 30)})


def test_fulltext_sync_search_filters_and_hostile_queries(db):
    from papersift.store.fulltext import Filters

    db.upsert_papers([
        paper(1, title="Attention is all you need", abstract="The dominant sequence transduction models.",
              authors=("Ashish Vaswani",), listed=dt.date(2024, 1, 1)),
        paper(2, title="Denoising diffusion probabilistic models", abstract="High quality image synthesis.",
              authors=("Jonathan Ho",), categories=("cs.LG",), listed=dt.date(2024, 2, 1)),
        paper(3, title="Optimisation of transformers", abstract="We optimize attention layers.",
              authors=("Ada Smith",), listed=dt.date(2024, 3, 1)),
    ])
    assert db.sync_fulltext() == 3
    assert db.sync_fulltext() == 0  # nothing changed since
    ids = {db.get_paper(f"2401.{n:05d}").id: n for n in (1, 2, 3)}
    first = [ids[i] for i, _ in db.search_fulltext("attention")]
    assert first[0] == 1  # the title match outranks the abstract match
    assert set(first) == {1, 3}
    assert [ids[i] for i, _ in db.search_fulltext("optimise")] == [3]  # stemming: optimise ~ optimisation
    assert [ids[i] for i, _ in db.search_fulltext('"probabilistic models"')] == [2]
    assert [ids[i] for i, _ in db.search_fulltext("diffus*")] == [2]
    assert [ids[i] for i, _ in db.search_fulltext("vaswani")] == [1]
    assert [ids[i] for i, _ in db.search_fulltext("attention", filters=Filters(since=dt.date(2024, 2, 1)))] == [3]
    assert [ids[i] for i, _ in db.search_fulltext("models", filters=Filters(category="cs.LG"))] == [2]
    assert [ids[i] for i, _ in db.search_fulltext("attention", filters=Filters(author="ada smith"))] == [3]
    for hostile in ['"', "NEAR(", "*", "AND", "OR NOT", "'; DROP TABLE papers; --", "x" * 10_000, "(((", "ünïcödé ∑"]:
        db.search_fulltext(hostile)  # answered, never an error
    assert db.count_papers() == 3
    # an update reaches the index on the next sync
    db.upsert_papers([paper(2, version=2, title="Denoising diffusion models, revised", abstract="Zebras.")])
    assert db.sync_fulltext() == 1
    assert [ids[i] for i, _ in db.search_fulltext("zebras")] == [2]
    assert db.search_fulltext("synthesis") == []


def test_embeddings_are_per_model_and_only_changed_papers_are_re_embedded(db):
    import numpy as np

    db.upsert_papers([paper(n) for n in range(1, 6)])
    todo = db.papers_to_embed("m1")
    assert len(todo) == 5
    vecs = np.eye(5, 4, dtype=np.float32)
    db.save_embeddings("m1", [(pid, seq) for pid, seq, _, _ in todo[:3]], vecs[:3])
    assert [t[0] for t in db.papers_to_embed("m1")] == [t[0] for t in todo[3:]]  # resumes with the rest
    db.save_embeddings("m1", [(pid, seq) for pid, seq, _, _ in todo[3:]], vecs[3:])
    assert db.papers_to_embed("m1") == []
    assert len(db.papers_to_embed("m2")) == 5  # another model never sees m1's vectors
    db.upsert_papers([paper(2, version=2, abstract="changed")])
    assert [t[0] for t in db.papers_to_embed("m1")] == [db.get_paper("2401.00002").id]
    ids, matrix = db.load_embeddings("m1", 4)
    assert ids.tolist() == sorted(t[0] for t in todo) and np.array_equal(matrix, vecs[np.argsort([t[0] for t in todo])])
    # the ids and seqs alone (what an index update compares): the seq each vector was computed at
    seq_ids, seqs = db.embedding_seqs("m1")
    assert seq_ids.tolist() == ids.tolist() and seqs.tolist() == [dict((t[0], t[1]) for t in todo)[i] for i in ids]
    assert db.embedding_seqs("m2")[0].size == 0
    assert db.embedding_models() == {"m1": 5}
    with pytest.raises(BadInput):
        db.save_embeddings("m1", [(1, 1)], vecs[:2])
    assert db.delete_embeddings("m1") == 5


def test_two_arxiv_papers_sharing_a_doi_in_one_batch(db):
    """Real snapshots have the same DOI on different arXiv ids: both papers land, the DOI on the first."""
    batch = [paper(n) for n in range(1, 9)]
    batch[2] = paper(3, doi="10.1000/shared")
    batch[6] = paper(7, doi="10.1000/shared")
    assert db.upsert_papers(batch).added == 8
    assert db.get_paper("10.1000/shared").arxiv_id == "2401.00003"
    assert db.get_paper("2401.00007").doi is None
    again = db.upsert_papers(batch)
    assert (again.added, again.updated, again.unchanged) == (0, 0, 8)


# -- accounts and engagement ---------------------------------------------------------------------

def test_sessions_expire_and_end_with_the_user(db):
    user = db.create_user("ada", "ada@example.org", "hash")
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    db.create_session(user.id, "h1", now + dt.timedelta(days=1))
    db.create_session(user.id, "h2", now + dt.timedelta(days=1))
    assert db.session_user("h1", now).id == user.id
    assert db.session_user("h1", now + dt.timedelta(days=2)) is None  # expired: gone for good
    assert db.session_user("h1", now) is None
    assert db.session_user("nope", now) is None
    db.create_session(user.id, "h3", now + dt.timedelta(days=1))
    assert db.delete_sessions(user.id, keep="h3") == 1  # h2 ends, h3 stays
    assert db.session_user("h2", now) is None and db.session_user("h3", now).id == user.id
    db.delete_user(user.id)
    assert db.session_user("h3", now) is None


def test_api_tokens_belong_to_their_owner(db):
    ada, bob = db.create_user("ada"), db.create_user("bob")
    tid = db.create_api_token(ada.id, "my script", "th1")
    assert db.token_user("th1").id == ada.id
    assert db.api_tokens(ada.id)[0]["name"] == "my script" and db.api_tokens(ada.id)[0]["last_used_at"]
    assert db.api_tokens(bob.id) == []
    with pytest.raises(NotFound):
        db.delete_api_token(bob.id, tid)  # not bob's
    assert db.token_user("th1").id == ada.id
    db.delete_api_token(ada.id, tid)
    assert db.token_user("th1") is None
    with pytest.raises(BadInput):
        db.create_api_token(ada.id, "  ", "th2")


def test_engagement_counts_each_reader_once_per_kind(db):
    db.upsert_papers([paper(1), paper(2)])
    p1, p2 = db.get_paper("2401.00001").id, db.get_paper("2401.00002").id
    ada, bob = db.create_user("ada"), db.create_user("bob")
    t0 = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    db.add_interaction(ada.id, p1, "upvote", t0)
    db.add_interaction(ada.id, p1, "upvote", t0)  # a repeat is no second vote
    db.add_interaction(bob.id, p1, "upvote", t0 + dt.timedelta(hours=1))
    for i in range(5):
        db.add_interaction(ada.id, p1, "view", t0 + dt.timedelta(minutes=i))
    db.add_interaction(bob.id, p2, "save", t0 + dt.timedelta(days=3))
    got = db.engagement()
    assert got[p1]["upvote"] == 2 and got[p1]["view"] == 1 and got[p1]["save"] == 0
    assert got[p2]["save"] == 1
    window = db.engagement(since=t0, until=t0 + dt.timedelta(days=1))
    assert set(window) == {p1}
    assert db.engagement(paper_ids=[p2]) == {p2: {"upvote": 0, "save": 1, "view": 0, "dismiss": 0}}
    assert db.engagement(paper_ids=[]) == {}


def test_secret_is_made_once_and_kept(db):
    first = db.secret("signing")
    assert len(first) >= 32
    assert db.secret("signing") == first
    assert db.secret("other") != first


def test_mutes_and_feed_settings(db):
    ada, bob = db.create_user("ada"), db.create_user("bob")
    assert db.mute(ada.id, "keyword", "  large   language ") is True
    assert db.mute(ada.id, "keyword", "Large Language") is False  # same, whatever the case
    db.mute(ada.id, "author", "Alan Turing")
    db.mute(ada.id, "category", "cs.CV")
    assert db.mutes(ada.id) == {"keyword": ["large language"], "author": ["Alan Turing"], "category": ["cs.CV"]}
    assert db.mutes(bob.id) == {"keyword": [], "author": [], "category": []}
    assert db.unmute(ada.id, "author", "Alan Turing") and db.mutes(ada.id)["author"] == []
    with pytest.raises(BadInput):
        db.mute(ada.id, "colour", "red")
    assert db.feed_settings(ada.id) == {"reset_at": None, "seed_collection": None, "categories": []}
    cid = db.create_collection(ada.id, "Reading group")
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    db.set_feed_settings(ada.id, reset_at=when, seed_collection=cid, categories=["cs.CL", "cs.LG", "cs.CL"])
    assert db.feed_settings(ada.id) == {"reset_at": when, "seed_collection": cid, "categories": ["cs.CL", "cs.LG"]}
    db.set_feed_settings(ada.id, seed_collection=None)  # the rest stays
    assert db.feed_settings(ada.id)["seed_collection"] is None and db.feed_settings(ada.id)["reset_at"] == when
    with pytest.raises(NotFound):
        db.set_feed_settings(bob.id, seed_collection=cid)  # not bob's collection
    db.set_feed_settings(ada.id, seed_collection=cid)
    db.delete_collection(ada.id, cid)
    assert db.feed_settings(ada.id)["seed_collection"] is None
