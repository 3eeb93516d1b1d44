"""The recommendation model over a real catalog (~450 real papers, real embeddings): fitted from
readers' libraries, saved, loaded by the feed, collaborative where readers overlap, and scoring a
paper nobody has kept from its content."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from papersift.index.build import model_key
from papersift.rank.feed import FeedService
from papersift.rank.personal import PersonalModel, model_folder, refresh_model
from papersift.rank.service import Discovery
from papersift.store import open_store


@pytest.fixture
def catalog(web_settings):
    store = open_store(web_settings.resolved_database_url)
    discovery = Discovery(store, web_settings.resolved_data_dir)
    yield store, discovery
    store.close()


def test_readers_who_overlap_lift_each_others_papers(catalog):
    store, discovery = catalog
    papers = store.papers_listed(dt.date(2026, 6, 29), dt.date(2026, 7, 1), limit=500)
    by_id = {p.id: p for p in papers}
    ids, vectors = store.paper_embeddings(model_key(discovery.embedder), list(by_id), discovery.embedder.dim)
    rng = np.random.default_rng(0)
    # ten readers share a taste: the same 6 papers, from across topics, plus their own few
    shared = [int(x) for x in rng.choice(ids, 6, replace=False)]
    readers = [store.create_user(f"r{i}") for i in range(10)]
    for i, user in enumerate(readers):
        own = [int(x) for x in rng.choice(ids, 3, replace=False)]
        for pid in (shared if i else shared[:3]) + own:  # reader 0 has kept only half the shared ones
            store.add_interaction(user.id, pid, "save")
    summary = refresh_model(store, discovery.data_dir, model_key(discovery.embedder), discovery.embedder.dim)
    assert "fitted on 10 readers" in summary
    assert (model_folder(discovery.data_dir) / "catalog.json").exists()
    feed = FeedService(store, discovery)
    page = feed.feed(readers[0], limit=20)
    got = [store.get_paper(h.paper_id).id for h in page.hits]
    assert set(shared[3:]) <= set(got[:10])  # what the nine others kept, reader 0 is shown first
    assert not set(got) & set(shared[:3])  # never what reader 0 already has


def test_a_paper_nobody_kept_is_scored_from_content(catalog):
    store, discovery = catalog
    key, dim = model_key(discovery.embedder), discovery.embedder.dim
    hits = discovery.search_page("speech recognition audio", limit=6).hits
    topic = [store.get_paper(h.paper_id).id for h in hits]
    others = [p.id for p in store.papers_listed(dt.date(2026, 6, 29), dt.date(2026, 6, 29), limit=40)
              if p.id not in topic][:20]
    a, b = store.create_user("a"), store.create_user("b")
    for pid in topic[:3]:
        store.add_interaction(a.id, pid, "save")
    for pid in others[:10]:
        store.add_interaction(b.id, pid, "save")
    refresh_model(store, discovery.data_dir, key, dim)
    model = PersonalModel.load(discovery.data_dir, key)
    assert model is not None and topic[4] not in model.index  # nobody kept it: not in the fit
    cand_ids, cand_vectors = store.paper_embeddings(key, topic[3:] + others[10:], dim)  # nobody kept any of them
    model.include(cand_ids, cand_vectors)
    scores = model.scores({p: 1.0 for p in topic[:3]}, set(), cand_ids)
    ranked = [int(cand_ids[i]) for i in np.argsort(-scores)]
    # the speech papers lead, from content alone (the sixth search hit for the query is not all speech)
    assert len(set(ranked[:3]) & set(topic[3:6])) >= 2
    assert all(ranked.index(t) < len(ranked) // 2 for t in topic[3:6])
    assert PersonalModel.load(discovery.data_dir, "another-model@1") is None  # other vectors: not used
