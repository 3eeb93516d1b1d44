"""store/copy.py: a whole catalog copied between backends (SQLite → PostgreSQL, and back), resumed after a
crash, and verified part by part. Real papers from the bundled sample; vectors are seeded random unit
vectors (the copy moves bytes, it never reads them, so a real model would only add minutes)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import numpy as np
import pytest
from conftest import WEB_DAYS, sample_papers

from papersift.errors import BadInput, ConfigError
from papersift.models import Paper
from papersift.store import open_store
from papersift.store.copy import GAPS, copy_catalog, verify_catalog
from papersift.web.auth import hash_password, verify_password

MODEL = "test-random@1"
DIM = 48
UTC = dt.timezone.utc


def _postgresql():
    """A fresh database on the session's throwaway PostgreSQL (tests/pg.py); skipped where none can start,
    unless PAPERSIFT_REQUIRE_POSTGRES=1."""
    import pg

    try:
        return open_store(pg.new_database(), migrate=True)
    except (pg.PostgresUnavailable, ImportError, ConfigError) as e:
        if os.environ.get("PAPERSIFT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required (PAPERSIFT_REQUIRE_POSTGRES=1) but: {e}")
        pytest.skip(f"no PostgreSQL here: {e}")


@pytest.fixture(scope="module")
def real_papers():
    papers = sample_papers(days=WEB_DAYS[:2], per_day=100)
    # and the awkward ones: no identifier at all (keyed by title), a DOI only, a NUL PostgreSQL cannot keep
    return papers + [
        Paper(title="A paper with no identifier", authors=("Grace Hopper",), abstract="Keyed by its title.",
              source="test", listed=dt.date(2026, 6, 30)),
        Paper(title="A paper with a DOI only", doi="10.1000/copy.test", authors=("Ada Lovelace",), source="test"),
        Paper(title="Nul inside", arxiv_id="2606.99999", abstract="before\x00after", source="test"),
    ]


PASSWORDS = {"ada": "correct horse battery", "alan": "enigma machine 1912", "grace": "compiler bug moth"}


def _populate(store, papers: list[Paper]) -> None:
    """A catalog with everything a copy must carry: papers, vectors, readers with passwords, timed
    interactions (views repeat), collections, mutes, feed settings, a subscription with a sent digest."""
    store.upsert_papers(papers)
    rows = store.papers_to_embed(MODEL, limit=10_000)
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((len(rows), DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.save_embeddings(MODEL, [(r[0], r[1]) for r in rows], vectors)
    ids = [r[0] for r in rows]
    users = {name: store.create_user(name, f"{name}@example.org", hash_password(pw)).id
             for name, pw in PASSWORDS.items()}
    t0 = dt.datetime(2026, 6, 30, 8, 0, tzinfo=UTC)
    for i, (name, uid) in enumerate(users.items()):
        for j in range(12):
            pid = ids[(i * 7 + j * 3) % len(ids)]
            at = t0 + dt.timedelta(minutes=i * 100 + j)
            store.add_interaction(uid, pid, ("save", "upvote", "view", "dismiss")[j % 4], at)
        store.add_interaction(uid, ids[0], "view", t0 + dt.timedelta(hours=5))
        store.add_interaction(uid, ids[0], "view", t0 + dt.timedelta(hours=6))  # views repeat
        cid = store.create_collection(uid, "reading list", f"{name}'s papers")
        for pid in ids[i:i + 5]:
            store.add_to_collection(uid, cid, pid)
        store.create_collection(uid, "empty one")
        store.mute(uid, "keyword", "blockchain")
        store.mute(uid, "author", "A. Nonymous")
        store.set_feed_settings(uid, reset_at=t0 + dt.timedelta(days=1), seed_collection=cid,
                                categories=["cs.CL", "cs.LG"])
    sub = store.upsert_subscription("ada@example.org", "weekly", ["cs.CL", "cs.AI"], users["ada"])
    store.set_subscription_status("ada@example.org", "active")
    store.upsert_subscription("someone@example.org", "daily", ["math.CO"])  # pending, no reader
    store.claim_mailing(sub.id, "digest", "2026-W26", "run-1", now=t0, lease_until=t0 + dt.timedelta(minutes=5),
                        message_id="<d1@papersift>", message=b"Subject: digest\r\n\r\nbody", paper_ids=ids[:4],
                        through=dt.date(2026, 6, 28))
    store.finish_mailing(sub.id, "digest", "2026-W26", "sent", t0 + dt.timedelta(minutes=1))
    store.claim_mailing(sub.id, "digest", "2026-W27", "run-2", now=t0 + dt.timedelta(days=7),
                        lease_until=t0 + dt.timedelta(days=7, minutes=5), message_id="<d2@papersift>",
                        message=b"Subject: unfinished\r\n\r\nbody", paper_ids=ids[4:6])
    store.sync_fulltext()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, real_papers):
    """The source catalog, made once; each test copies from it (a copy never writes to its source)."""
    store = open_store(str(tmp_path_factory.mktemp("copy") / "source.db"), migrate=True)
    _populate(store, real_papers)
    yield store
    store.close()


def _vectors_by_key(store) -> dict[str, bytes]:
    ids, vectors = store.load_embeddings(MODEL, DIM)
    papers = {p.id: p.key for p in store.get_papers(ids.tolist())}
    return {papers[int(i)]: v.astype("<f4").tobytes() for i, v in zip(ids, vectors)}


def _assert_same(source, target, report) -> None:
    assert report.verified, report.as_dict()
    for name in ("papers", f"embeddings:{MODEL}", "users", "interactions", "collections", "collection_items",
                 "mutes", "feed_settings", "subscriptions", "mailings"):
        part = report.parts[name]
        assert part.source_count == part.target_count and part.source_sha == part.target_sha, name
        assert part.source_count, name  # every part had something to copy
    assert target.count_papers() == source.count_papers()
    assert len(target.interactions()) == len(source.interactions())
    assert _vectors_by_key(target) == _vectors_by_key(source)  # bit for bit
    assert source.embedding_models() == target.embedding_models()


def test_sqlite_to_postgresql_copies_and_verifies_everything(catalog):
    target = _postgresql()
    seen = []
    report = copy_catalog(catalog, target, batch=64, on_progress=lambda part, done, total: seen.append(part))
    try:
        _assert_same(catalog, target, report)
        assert {"papers", f"embeddings:{MODEL}", "interactions", "verify"} <= set(seen)
        assert report.parts["papers"].copied == catalog.count_papers()
        assert report.gaps == GAPS and not report.problems

        # readers log in with their old passwords
        for name, pw in PASSWORDS.items():
            assert verify_password(target.get_password_hash(target.get_user(name).id), pw)[0]
        ada = target.get_user("ada")
        # interactions keep their times; collections, mutes and the feed keep their identities
        t0 = dt.datetime(2026, 6, 30, 8, 0, tzinfo=UTC)
        assert target.interactions(ada.id)[0][3] == t0.isoformat()
        reading = next(c for c in target.collections(ada.id) if c["name"] == "reading list")
        assert reading["size"] == 5 and reading["description"] == "ada's papers"
        assert target.mutes(ada.id)["author"] == ["A. Nonymous"]
        feed = target.feed_settings(ada.id)
        assert feed["seed_collection"] == reading["id"] and feed["categories"] == ["cs.CL", "cs.LG"]
        # the subscription is active, its digest history is there, and its next digest starts after the last
        sub = target.get_subscription("ada@example.org")
        assert sub.status == "active" and sub.user_id == ada.id and sub.last_sent_at == "2026-06-30T08:01:00+00:00"
        assert len(target.mailed_paper_ids(sub.id)) == 6  # sent + still claimed: neither is mailed again
        unfinished = target.get_mailing(sub.id, "digest", "2026-W27")
        assert unfinished["status"] == "claimed" and unfinished["message"].startswith(b"Subject: unfinished")
        assert unfinished["owner"] is None  # released: the next digest run resends it

        # search works at once on the target
        paper = next(p for p in catalog.iter_papers() if p.arxiv_id and len(p.title.split()) > 4)
        hits = target.search_fulltext(paper.title)
        assert target.get_paper(paper.arxiv_id).id in [pid for pid, _ in hits[:3]]
        assert target.find_paper("2606.99999").abstract == "beforeafter"  # NUL dropped, and still verified

        # a second run finds everything done, writes nothing and still verifies
        again = copy_catalog(catalog, target, batch=64)
        assert again.verified
        assert all(p.copied == 0 for name, p in again.parts.items() if name != "fulltext"), again.as_dict()
    finally:
        target.close()


class _Crash(Exception):
    pass


def test_a_crashed_copy_resumes_without_duplicates(catalog):
    target = _postgresql()

    def crash_at(part_name: str, after: int):
        def progress(part, done, total):
            if part == part_name and done >= after:
                raise _Crash(f"{part} {done}")
        return progress

    try:
        with pytest.raises(_Crash):
            copy_catalog(catalog, target, batch=40, on_progress=crash_at("papers", 80))
        assert target.count_papers() == 80  # two whole batches committed, with their checkpoint
        with pytest.raises(_Crash):
            copy_catalog(catalog, target, batch=40, on_progress=crash_at("interactions", 40))
        with pytest.raises(_Crash):
            copy_catalog(catalog, target, batch=40, on_progress=crash_at("verify", 0))
        report = copy_catalog(catalog, target, batch=40)
        _assert_same(catalog, target, report)
        # the rerun redid nothing that was done: no paper, vector or interaction twice
        assert report.parts["papers"].copied == 0 and report.parts["interactions"].copied == 0
        assert report.parts["users"].skipped == 3
    finally:
        target.close()


def test_postgresql_to_sqlite(tmp_path, real_papers):
    source = _postgresql()
    try:
        _populate(source, real_papers[:40] + real_papers[-3:])
        target = open_store(str(tmp_path / "back.db"), migrate=True)
        report = copy_catalog(source, target, batch=16)
        _assert_same(source, target, report)
        assert verify_password(target.get_password_hash(target.get_user("grace").id), PASSWORDS["grace"])[0]
        target.close()
    finally:
        source.close()


class _Refuses:
    """A target that refuses one paper, as a backend would a record it cannot hold: the copy must report
    it and carry on with the rest of its batch."""

    def __init__(self, store, arxiv_id: str):
        self._store, self._arxiv_id = store, arxiv_id

    def __getattr__(self, name):
        return getattr(self._store, name)

    def upsert_papers(self, papers, checkpoint=None):
        if any(p.arxiv_id == self._arxiv_id for p in papers):
            raise BadInput(f"cannot hold {self._arxiv_id}")
        return self._store.upsert_papers(papers, checkpoint)


def test_a_paper_that_fails_is_reported_and_the_rest_lands(catalog, tmp_path):
    target = open_store(str(tmp_path / "target.db"), migrate=True)
    bad = next(p for p in catalog.iter_papers() if p.arxiv_id)
    report = copy_catalog(catalog, _Refuses(target, bad.arxiv_id), batch=50)
    assert report.parts["papers"].failed == 1
    assert any(bad.arxiv_id in line for line in report.problems)
    assert target.count_papers() == catalog.count_papers() - 1
    assert not report.verified and not report.parts["papers"].verified
    assert any(bad.arxiv_id in line for line in report.parts["papers"].differences)
    # the interactions on it are reported too, every other one landed
    assert report.parts["interactions"].failed == report.parts["interactions"].source_count - len(target.interactions())
    # once the target takes it, a rerun fills in just what was missing
    again = copy_catalog(catalog, target, batch=50)
    assert again.verified and again.parts["papers"].copied == 1 and not again.problems
    assert again.parts["interactions"].copied == report.parts["interactions"].failed
    target.close()


def test_verify_names_the_parts_that_differ(catalog, tmp_path):
    target = open_store(str(tmp_path / "target.db"), migrate=True)
    assert copy_catalog(catalog, target).verified
    ada = target.get_user("ada")
    target.mute(ada.id, "category", "hep-th")
    changed = dataclasses.replace(target.find_paper("2606.99999"), title="Nul inside, edited", id=None)
    target.upsert_papers([changed])
    report = verify_catalog(catalog, target)
    assert not report.verified
    assert {name for name, p in report.parts.items() if not p.verified} == {"papers", "mutes"}
    assert report.parts["mutes"].differences == ['only in target: ["ada","category","hep-th"]']
    assert report.parts["papers"].differences == ["differs or missing in target: 2606.99999",
                                                  "differs or extra in target: 2606.99999"]
    target.close()


def test_cli_migrate_to_and_verify(clean_env, capsys):
    """`papersift db migrate-to` / `db verify` as a user runs them: the bundled sample into PostgreSQL."""
    from test_store_contract import _postgresql

    from papersift.cli import main

    tmp_path = clean_env
    target = _postgresql(tmp_path)  # skips (or fails, in CI) without a server
    url = target.url
    target.close()
    assert main(["demo", "--quiet", "--no-index"]) == 0
    capsys.readouterr()
    assert main(["db", "migrate-to", url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "verified in" in out and "papers" in out and "3,467" in out
    assert "then run `papersift index`" in out  # the data dir's indexes are the old catalog's
    assert main(["db", "verify", url, "--json"]) == 0
    assert main(["db", "migrate-to", str(tmp_path / "data" / "catalog.db")]) == 1  # itself: refused


class _Model:
    """Names the model of the random vectors: sync_vector_index reads only a model's name, version and
    vector length (the vectors come from the catalog)."""

    name, version, dim = MODEL.split("@")[0], MODEL.split("@")[1], DIM


def test_the_data_dirs_indexes_follow_the_catalog_to_its_copy(tmp_path, real_papers):
    """A user copies the catalog to PostgreSQL and keeps the data dir: the indexes there were built from
    the SQLite catalog, whose row ids and change_seqs the copy does not have. The next `papersift index`
    must bring them in step with the new catalog, not find them "up to date" and miss the new papers."""
    from papersift.index.build import searchable_lexical, sync_vector_index, vectors_of_another_catalog
    from papersift.index.lexical import open_lexical_index, read_manifest, sync_lexical_index

    rng = np.random.default_rng(11)

    def embed(store) -> None:
        rows = store.papers_to_embed(MODEL, limit=10_000)
        vectors = rng.standard_normal((len(rows), DIM)).astype(np.float32)
        store.save_embeddings(MODEL, [(r[0], r[1]) for r in rows], vectors / np.linalg.norm(vectors, axis=1,
                                                                                              keepdims=True))

    source = open_store(str(tmp_path / "catalog.db"), migrate=True)
    papers = real_papers[:60]
    for day in range(0, 60, 10):  # six days of ingest: change_seq runs to 6 here
        source.upsert_papers(papers[day:day + 10])
    embed(source)
    lexical, vectors = tmp_path / "lexical", tmp_path / "vectors" / "test"
    assert sync_lexical_index(source, lexical)[1] == "built"
    sync_vector_index(source, _Model, vectors)
    # the PostgreSQL database already holds a paper (tried out before the copy): every id shifts by one
    target = _postgresql()
    try:
        target.upsert_papers([real_papers[100]])
        report = copy_catalog(source, target)
        assert report.parts["papers"].copied == 60 and not report.problems  # not verified: one more paper
        # the next day's ingest lands in PostgreSQL only
        new = Paper(title="Zebrafish fin regeneration atlas", arxiv_id="2607.00042", abstract="Zebrafish fins.",
                    authors=("Ada Lovelace",), categories=("q-bio.TO",), listed=dt.date(2026, 7, 2), source="test")
        target.upsert_papers([new])
        embed(target)
        # until `papersift index` runs, a server on the copy must not search with the SQLite catalog's files
        assert vectors_of_another_catalog(vectors, target.catalog_id())
        assert not vectors_of_another_catalog(vectors, source.catalog_id())
        assert read_manifest(lexical)["catalog"] == source.catalog_id() != target.catalog_id()
        assert searchable_lexical(target, tmp_path) is None and searchable_lexical(source, tmp_path) is not None
        index, action = sync_lexical_index(target, lexical)
        assert action.startswith("built")  # another catalog's index: rebuilt, not taken for up to date
        assert [pid for pid, _ in index.search("zebrafish", 5)] == [target.get_paper("2607.00042").id]
        fresh, _ = sync_lexical_index(target, tmp_path / "fresh")
        assert index.search("language models", 20) == fresh.search("language models", 20)
        assert sync_lexical_index(target, lexical)[1] == "up to date"
        # every vector in the index is the one the new catalog holds for that id
        vindex, _ = sync_vector_index(target, _Model, vectors)
        assert not vectors_of_another_catalog(vectors, target.catalog_id())
        ids, stored = target.load_embeddings(MODEL, DIM)
        assert sorted(vindex.ids().tolist()) == ids.tolist()
        found, _ = vindex.search(stored, 1)
        assert np.asarray(found).reshape(-1).tolist() == ids.tolist()
        # and the SQLite catalog, opened again with this data dir, gets its own indexes back
        assert sync_lexical_index(source, lexical)[1].startswith("built")
        assert open_lexical_index(lexical).search("zebrafish", 5) == []
    finally:
        target.close()
        source.close()
