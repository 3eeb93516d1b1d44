"""Trending, replayed: the bundled sample catalog (3,467 real arXiv papers) in a real store (SQLite and
PostgreSQL: every test that reads a catalog runs on both), with the recorded vote streams of
tests/data/vote_streams/ (see record.py there) replayed through Store.add_interaction, and the real
MiniLM model for the content prior."""

from __future__ import annotations

import collections
import datetime as dt
import functools
import gzip
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKENDS, drop_postgres_database, open_postgres_store

from papersift.errors import BadInput
from papersift.index.build import model_key, paper_text
from papersift.index.embed import create_embedder
from papersift.ingest.jsonl import SAMPLE_FILE, parse_arxiv_daily_record
from papersift.models import Paper
from papersift.rank.trending import (
    TrendingParams,
    content_prior,
    latest_day,
    neighbour_days,
    score_trending,
    trending,
    window_start,
)
from papersift.store import open_store

STREAMS = Path(__file__).resolve().parent / "data" / "vote_streams"
UTC = dt.timezone.utc
D = dt.date.fromisoformat


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def stream(name: str) -> list[dict]:
    with open(STREAMS / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def replay(store, name: str) -> None:
    """Every recorded interaction, in order, as the web app records it."""
    users, papers = {}, {}
    for e in stream(name):
        if e["user"] not in users:
            users[e["user"]] = store.create_user(e["user"]).id
        if e["paper"] not in papers:
            papers[e["paper"]] = store.get_paper(e["paper"]).id
        store.add_interaction(users[e["user"]], papers[e["paper"]], e["kind"], dt.datetime.fromisoformat(e["at"]))


def who_did(name: str, user_prefix: str, kind: str) -> set[str]:
    return {e["paper"] for e in stream(name) if e["user"].startswith(user_prefix) and e["kind"] == kind}


@pytest.fixture(scope="module")
def sample() -> list[Paper]:
    with resources.as_file(resources.files("papersift") / "data" / SAMPLE_FILE) as path:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [parse_arxiv_daily_record(json.loads(line)) for line in f]


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    """Module-wide here: each backend's catalogs are built once for the module."""
    return request.param


def _build(store, sample, streams) -> None:
    store.upsert_papers(sample)
    for s in streams:
        replay(store, s)
    store.close()  # SQLite: the last connection closing folds the WAL into the file that gets copied


CATALOGS = {"bare": (), "organic": ("organic",)}


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory, sample, backend) -> dict[str, str]:
    """Two catalogs built once: the bare sample, and the sample with organic traffic replayed. SQLite: files
    a test copies; PostgreSQL: template databases a test copies."""
    out: dict[str, str] = {}
    folder = tmp_path_factory.mktemp("catalogs")
    for name, streams in CATALOGS.items():
        if backend == "postgresql":
            out[name], store = open_postgres_store()
        else:
            out[name] = str(folder / f"{name}.db")
            store = open_store(out[name], migrate=True)
        _build(store, sample, streams)
    yield out
    if backend == "postgresql":
        for url in out.values():
            drop_postgres_database(url)


def _copy(catalogs: dict[str, str], base: str, backend: str, path: Path):
    """(a private copy of a catalog, and what to drop afterwards)."""
    if backend == "postgresql":
        url, store = open_postgres_store(template=catalogs[base])
        return store, url
    shutil.copyfile(catalogs[base], path)
    return open_store(str(path)), None


@pytest.fixture
def open_catalog(tmp_path, catalogs, backend):
    """A private copy of a catalog, with more streams replayed on it."""
    opened = []

    def open_(base: str, *streams: str):
        store, url = _copy(catalogs, base, backend, tmp_path / f"{base}-{len(opened)}.db")
        opened.append((store, url))
        for s in streams:
            replay(store, s)
        return store

    yield open_
    for store, url in opened:
        store.close()
        if url:
            drop_postgres_database(url)


@pytest.fixture(scope="module")
def organic(catalogs, backend, tmp_path_factory):
    store, url = _copy(catalogs, "organic", backend, tmp_path_factory.mktemp("organic") / "organic.db")
    yield store
    store.close()
    if url:
        drop_postgres_database(url)


def rank_of(hits, ref: str) -> int:
    return [h.paper_id for h in hits].index(ref)


def paper(ref: int, listed: str = "2026-06-30", **signals) -> Paper:
    return Paper(title=f"Paper {ref}", arxiv_id=f"2606.{ref:05d}", listed=D(listed), id=ref, signals=signals)


def counts(up=0, save=0, view=0, dismiss=0) -> dict:
    return {"upvote": up, "save": save, "view": view, "dismiss": dismiss}


# -- one account, one voice ------------------------------------------------------------------------

def test_repeated_votes_and_view_bursts_by_one_account_count_once(open_catalog):
    store = open_catalog("organic", "repeat_voter")
    hits = trending(store, "day", D("2026-06-30"), limit=1000)
    by_ref = {h.paper_id: h for h in hits}
    (repeated,) = who_did("repeat_voter", "mallory", "upvote")
    (honest,) = who_did("repeat_voter", "honest-", "upvote")
    (single,) = who_did("repeat_voter", "dora", "upvote")
    (burst,) = who_did("repeat_voter", "viewbot", "view")
    assert rank_of(hits, honest) < rank_of(hits, repeated)  # three readers beat one account's 200 upvotes
    # 200 upvotes from one account weigh exactly what one reader's single upvote does
    assert by_ref[repeated].score == pytest.approx(by_ref[single].score)
    assert by_ref[repeated].reason == "1 upvote · viewed by 1"
    # 300 page loads from one account are one viewer: below one upvote, and said so
    assert rank_of(hits, single) < rank_of(hits, burst)
    assert by_ref[burst].reason == "viewed by 1"
    assert by_ref[honest].reason == "3 upvotes · viewed by 3"


# -- windows ---------------------------------------------------------------------------------------

def test_each_window_holds_exactly_the_papers_listed_in_it(organic, sample):
    def listed_in(first: str, last: str) -> set[str]:
        return {p.ref for p in sample if D(first) <= p.listed <= D(last)}

    for window, first in (("day", "2026-06-30"), ("week", "2026-06-24"), ("month", "2026-06-01")):
        assert window_start(window, D("2026-06-30")) == D(first)
        hits = trending(organic, window, D("2026-06-30"), limit=10_000)
        assert len(hits) == len({h.paper_id for h in hits})
        assert {h.paper_id for h in hits} == listed_in(first, "2026-06-30")
    # the most upvoted paper listed on 2026-06-23 is in the week ending the 29th, and gone a day later
    up = collections.Counter(e["paper"] for e in stream("organic") if e["kind"] == "upvote")
    star = max((ref for ref in up if organic.get_paper(ref).listed == D("2026-06-23")), key=up.__getitem__)
    assert rank_of(trending(organic, "week", D("2026-06-29"), limit=10), star) < 10
    assert star not in {h.paper_id for h in trending(organic, "week", D("2026-06-30"), limit=10_000)}
    assert star in {h.paper_id for h in trending(organic, "month", D("2026-06-30"), limit=10_000)}
    # no day given: the latest listed day
    assert trending(organic, "day", limit=5) == trending(organic, "day", D("2026-07-01"), limit=5)
    with pytest.raises(BadInput) as bad:
        trending(organic, "year", D("2026-06-30"))
    assert "day, week, month" in bad.value.hint


def test_category_filter_keeps_cross_lists_and_the_same_order(organic):
    everything = trending(organic, "week", D("2026-06-30"), limit=10_000)
    in_cl = trending(organic, "week", D("2026-06-30"), category="cs.CL", limit=10_000)
    categories = {ref: organic.get_paper(ref).categories for ref in (h.paper_id for h in everything)}
    assert in_cl == [h for h in everything if "cs.CL" in categories[h.paper_id]]
    assert any(categories[h.paper_id][0] != "cs.CL" for h in in_cl)  # cross-listed papers count
    assert in_cl[0].score > 0
    assert trending(organic, "week", D("2026-06-30"), category="no.such") == []


# -- gravity ---------------------------------------------------------------------------------------

def test_fresh_votes_overtake_more_older_votes_as_time_passes(open_catalog):
    store = open_catalog("organic", "old_vs_new")
    (old,) = who_did("old_vs_new", "early-", "upvote")
    (new,) = who_did("old_vs_new", "late-", "upvote")
    week = functools.partial(trending, store, "week", limit=10_000)
    # the week ending the 29th: 8 upvotes from the 24th beat the new paper's first one
    assert rank_of(week(D("2026-06-29")), old) < rank_of(week(D("2026-06-29")), new)
    # the week ending the 30th, as the day goes on: at midnight the old paper still leads; by the end of
    # the day four more readers upvoted the new one and it leads, with fewer votes (5 against 8)
    morning = week(D("2026-06-30"), now=at("2026-06-30T00:00"))
    evening = week(D("2026-06-30"))  # now = the window's end
    assert rank_of(morning, old) < rank_of(morning, new)
    assert rank_of(evening, new) < rank_of(evening, old)
    assert {h.paper_id: h.reason for h in evening}[new] == "5 upvotes · viewed by 8"
    # it is the gravity: without it, more votes win whatever their age
    flat = week(D("2026-06-30"), params=TrendingParams(gravity=0.0))
    assert rank_of(flat, old) < rank_of(flat, new)


def test_same_votes_rank_the_younger_paper_first_and_scores_fall_with_time():
    engagement = {1: counts(up=4, view=6), 2: counts(up=4, view=6)}
    papers = [paper(1, "2026-06-24"), paper(2, "2026-06-29")]
    now = at("2026-06-30T12:00")
    hits = score_trending(papers, engagement, now, window_days=7)
    assert [h.paper_id for h in hits] == ["2606.00002", "2606.00001"]
    later = score_trending(papers, engagement, now + dt.timedelta(days=2), window_days=7)
    assert all(b.score < a.score for a, b in zip(sorted(hits, key=lambda h: h.paper_id),
                                                  sorted(later, key=lambda h: h.paper_id)))
    # measured in windows: the week page decays a 6-day age far less than a day-long scale would
    week = score_trending([paper(1, "2026-06-24")], engagement, now, window_days=7)[0].score
    day = score_trending([paper(1, "2026-06-24")], engagement, now, window_days=1)[0].score
    assert week > 3 * day


def test_now_defaults_to_the_end_of_the_window(organic):
    end = trending(organic, "day", D("2026-06-30"), now=at("2026-07-01T00:00"), limit=20)
    assert trending(organic, "day", D("2026-06-30"), limit=20) == end
    naive = trending(organic, "day", D("2026-06-30"), now=dt.datetime(2026, 7, 1), limit=20)
    assert naive == end
    # votes after `now` do not count yet
    early = trending(organic, "day", D("2026-06-30"), now=at("2026-06-30T06:00"), limit=20)
    assert sum(h.score > 0 for h in early) < sum(h.score > 0 for h in end)


# -- signals ---------------------------------------------------------------------------------------

def test_hugging_face_upvotes_count_but_damped(open_catalog, sample):
    papers = [paper(1, hf_upvotes=100), paper(2), paper(3, hf_upvotes=1000), paper(4), paper(5, hf_upvotes=None)]
    engagement = {2: counts(up=5), 4: counts(up=1)}
    hits = score_trending(papers, engagement, at("2026-06-30T20:00"))
    order = [h.paper_id for h in hits]
    score = {h.paper_id: h.score for h in hits}
    # 5 readers here outweigh 100 on Hugging Face, which outweigh one reader here and nothing at all
    assert order.index("2606.00002") < order.index("2606.00001") < order.index("2606.00004") < order.index("2606.00005")
    assert score["2606.00003"] < 2 * score["2606.00001"]  # ten times the votes, not ten times the score
    assert {h.paper_id: h.reason for h in hits}["2606.00001"] == "100 upvotes on Hugging Face"
    # through the store: a 2026-07-01 paper that Hugging Face readers upvoted leads that (unvoted) day
    store = open_catalog("bare")
    target = next(p for p in sample if p.listed == D("2026-07-01"))
    store.upsert_papers([Paper(title=target.title, arxiv_id=target.arxiv_id, listed=target.listed,
                               source="hf-daily", signals={"hf_upvotes": 42})])
    top = trending(store, "day", D("2026-07-01"), limit=2)
    assert top[0].paper_id == target.arxiv_id and top[0].reason == "42 upvotes on Hugging Face" and top[1].score == 0


def test_dismissals_cancel_votes_but_never_go_negative(organic):
    papers = [paper(1), paper(2), paper(3), paper(4)]
    engagement = {1: counts(dismiss=5), 2: counts(up=2, dismiss=10), 3: counts(up=3, dismiss=1), 4: counts(up=3)}
    hits = {h.paper_id: h.score for h in score_trending(papers, engagement, at("2026-06-30T20:00"))}
    assert hits["2606.00001"] == 0.0 and hits["2606.00002"] == 0.0
    assert 0 < hits["2606.00003"] < hits["2606.00004"]
    assert all(h.score >= 0 for h in trending(organic, "month", D("2026-06-30"), limit=10_000))


# -- the content prior -----------------------------------------------------------------------------

def test_prior_orders_unvoted_papers_but_never_lifts_one_over_a_voted_one(organic):
    papers = [paper(1), paper(2), paper(3)]
    hits = score_trending(papers, {1: counts(up=1)}, at("2026-06-30T20:00"), prior={2: 1.0, 3: 0.2})
    assert [h.paper_id for h in hits] == ["2606.00001", "2606.00002", "2606.00003"]
    assert hits[1].reason == "new: close to what readers upvoted in the past week"
    assert hits[0].reason == "1 upvote"
    # on a real day: the strongest possible prior for every paper, and still every paper that a reader
    # upvoted or saved ranks above every paper nobody touched
    def everything(ids, since, until):
        return {i: 1.0 for i in ids}

    hits = trending(organic, "day", D("2026-06-30"), limit=10_000, prior=everything)
    ids = {organic.get_paper(h.paper_id).id: h.paper_id for h in hits}
    engaged = organic.engagement(since=at("2026-06-30T00:00"), until=at("2026-07-01T00:00"), paper_ids=list(ids))
    voted = [rank_of(hits, ids[i]) for i, c in engaged.items() if c["upvote"] + c["save"]]
    untouched = [rank_of(hits, ref) for i, ref in ids.items() if i not in engaged]
    assert voted and untouched and max(voted) < min(untouched)


def test_content_prior_weighs_readers_takes_the_top_k_and_skips_the_paper_itself(open_catalog, sample):
    """The aggregation on hand-made vectors whose cosines are known (the real model is the next test)."""
    store = open_catalog("bare")
    a, b, c, d, e, f = (store.get_paper(p.ref).id for p in sample[:6])
    e1, e2 = [1.0] + [0.0] * 7, [0.0, 1.0] + [0.0] * 6
    half = [2 ** -0.5, 2 ** -0.5] + [0.0] * 6
    store.save_embeddings("toy", [(a, 1), (b, 1), (c, 1), (d, 1), (e, 1)],
                          np.array([e1, e1, e2, half, [-1.0] + [0.0] * 7], dtype="float32"))
    readers = [store.create_user(f"r{i}").id for i in range(3)]
    for r in readers:  # three readers upvote a; one saves c
        store.add_interaction(r, a, "upvote", at("2026-06-30T10:00"))
    store.add_interaction(readers[0], c, "save", at("2026-06-30T11:00"))
    since, until = at("2026-06-30T00:00"), at("2026-07-01T00:00")
    got = content_prior(store, "toy", 8, [a, b, c, d, e, f], since, until)
    # weights r/(r+1): a (3 readers) 0.75, c (1) 0.5; the prior is the mean of the best k=2 weighted cosines
    assert got[b] == pytest.approx((0.75 + 0.0) / 2)  # b is a's twin
    assert got[d] == pytest.approx((0.75 + 0.5) * 2 ** -0.5 / 2)
    assert got[a] == pytest.approx(0.0)  # its own vote is no evidence: only c counts, at cosine 0
    assert got[e] == 0.0 and f not in got  # opposite: clipped at 0; no embedding: no prior
    assert content_prior(store, "toy", 8, [b], since, until, top_k=1)[b] == pytest.approx(0.75)


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return create_embedder("minilm:128", tmp_path_factory.mktemp("models"))  # 128 tokens: enough, and faster


# 2026-07-01 papers, listed after the organic stream ended, so nobody has voted on them. Readers of the
# recorded site upvote image and video generation: the first four are on that, the last four are not.
ON_TOPIC = ["2606.31147", "2606.31924", "2606.31946", "2606.32020"]
OFF_TOPIC = ["2606.30776", "2606.31294", "2606.31149", "2606.31202"]


def test_new_unvoted_papers_close_to_what_readers_upvote_rank_first(organic, embedder):
    day = D("2026-07-01")
    now = at("2026-07-02T00:00")
    engaged = organic.engagement(since=now - dt.timedelta(days=7), until=now)
    # Embedding all 3,467 papers takes minutes here: embed the 40 papers readers kept most, and the candidates.
    liked = sorted(engaged, key=lambda i: (-(engaged[i]["upvote"] + engaged[i]["save"]), i))[:40]
    chosen = organic.get_papers(liked) + [organic.get_paper(ref) for ref in ON_TOPIC + OFF_TOPIC]
    key = model_key(embedder)
    organic.save_embeddings(key, [(p.id, 1) for p in chosen], embedder.embed([paper_text(p.title, p.abstract) for p in chosen]))
    try:
        prior = functools.partial(content_prior, organic, key, embedder.dim)
        hits = trending(organic, "day", day, limit=10_000, prior=prior)
        ranks = {ref: rank_of(hits, ref) for ref in ON_TOPIC + OFF_TOPIC}
        assert max(ranks[r] for r in ON_TOPIC) < min(ranks[r] for r in OFF_TOPIC), ranks
        assert hits[0].paper_id in ON_TOPIC and hits[0].reason == "new: close to what readers upvoted in the past week"
        assert all(h.score > 0 for h in hits[:8])
        # no prior: nothing to go on, so the day is in id order, every score 0
        plain = trending(organic, "day", day, limit=10_000)
        assert [h.paper_id for h in plain] == sorted(h.paper_id for h in plain) and not any(h.score for h in plain)
        # the prior's evidence is readers' votes: none in the window, no prior
        ids = [organic.get_paper(ref).id for ref in ON_TOPIC]
        assert content_prior(organic, key, embedder.dim, ids, at("2026-01-01T00:00"), at("2026-02-01T00:00")) == {}
        assert content_prior(organic, "no-such-model", embedder.dim, ids, now - dt.timedelta(days=7), now) == {}
    finally:
        organic.delete_embeddings(key)


# -- determinism, paging, navigation ---------------------------------------------------------------

def test_results_are_deterministic_and_pages_slice_one_order(organic):
    full = trending(organic, "month", D("2026-06-30"), limit=10_000)
    assert trending(organic, "month", D("2026-06-30"), limit=10_000) == full
    assert trending(organic, "month", D("2026-06-30"), limit=10, offset=20) == full[20:30]
    assert all((a.score, b.paper_id) >= (b.score, a.paper_id) for a, b in zip(full, full[1:]))  # ties: by id
    shuffled = score_trending(list(reversed([paper(i) for i in range(1, 6)])), {}, at("2026-06-30T20:00"))
    assert [h.paper_id for h in shuffled] == [f"2606.0000{i}" for i in range(1, 6)]
    with pytest.raises(BadInput):
        trending(organic, "day", D("2026-06-30"), limit=-1)


def test_latest_and_neighbour_days(open_catalog, sample, empty_store):
    empty = empty_store
    catalog = open_catalog("bare")
    assert latest_day(catalog) == D("2026-07-01")

    def oracle(day: dt.date, category: str | None = None):
        days = sorted({p.listed for p in sample if category is None or category in p.categories})
        return max((d for d in days if d < day), default=None), min((d for d in days if d > day), default=None)

    probes = [D("2026-06-01"), D("2026-07-20")] + [D("2026-06-14") + dt.timedelta(days=i) for i in range(19)]
    for day in probes:
        assert neighbour_days(catalog, day) == oracle(day), day
        assert neighbour_days(catalog, day, "cs.GR") == oracle(day, "cs.GR"), day
    assert neighbour_days(catalog, D("2026-06-21")) == (D("2026-06-19"), D("2026-06-23"))  # a weekend
    # an empty catalog: nothing anywhere
    assert latest_day(empty) is None and neighbour_days(empty, D("2026-06-30")) == (None, None)
    assert trending(empty, "week") == [] and trending(empty, "week", D("2026-06-30")) == []
