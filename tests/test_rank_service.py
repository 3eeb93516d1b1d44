"""Discovery in a long-running server: it notices what `papersift index` has rewritten on disk and
reloads that, and only that."""

from __future__ import annotations

import threading

from papersift.index.build import embed_pending, index_folder, lexical_folder, sync_vector_index
from papersift.index.lexical import sync_lexical_index
from papersift.models import Paper
from papersift.rank import service
from papersift.rank.service import Discovery
from papersift.store import open_store


def test_a_running_server_finds_new_papers_by_keyword_before_they_are_embedded(web_settings):
    store = open_store(web_settings.resolved_database_url)
    data = web_settings.resolved_data_dir
    try:
        discovery = Discovery(store, data)
        before = discovery.index
        new = Paper(title="Power walk: revisiting the random surfer on citation graphs", doi="10.5555/fresh.1",
                    abstract="A random surfer that walks citation graphs with a power-law restart.",
                    authors=("Ada Lovelace",), categories=("cs.IR",))
        store.upsert_papers([new])
        assert discovery.search_page(new.title).hits[0].paper_id != "doi:10.5555/fresh.1"  # not indexed yet
        # `papersift index` writes the full text and BM25 first: the server searches them once it has looked
        store.sync_fulltext()
        sync_lexical_index(store, lexical_folder(data))
        discovery.refresh(wait=True)
        first = discovery.search_page(new.title).hits[0]
        assert (first.paper_id, first.reason) == ("doi:10.5555/fresh.1", "the title you searched for")
        assert discovery.index is before  # the unchanged vector index was kept, not read again
        # then the embeddings and the vector index: the next look takes the new one
        assert embed_pending(store, discovery.embedder) == 1
        sync_vector_index(store, discovery.embedder, index_folder(data, discovery.embedder))
        discovery.refresh(wait=True)
        assert discovery.index is not before and len(discovery.index) == len(before) + 1
        assert store.get_paper("10.5555/fresh.1").id in discovery.index
    finally:
        store.close()


def test_requests_go_on_with_the_old_indexes_while_new_ones_are_read(web_settings, monkeypatch):
    """The reading happens on a thread of its own (a million vectors take ~17 s): here it is held up
    until the test lets it go, and searches meanwhile are answered, from the indexes loaded before."""
    store = open_store(web_settings.resolved_database_url)
    data = web_settings.resolved_data_dir
    try:
        discovery = Discovery(store, data)
        before = discovery.index
        store.upsert_papers([Paper(title="Sparse attention for long documents", doi="10.5555/slow.1",
                                   abstract="Sparse attention.", categories=("cs.CL",))])
        embed_pending(store, discovery.embedder)
        sync_vector_index(store, discovery.embedder, index_folder(data, discovery.embedder))
        release, reading = threading.Event(), threading.Event()
        real = service.searchable_tier

        def slow_tier(*args):
            reading.set()
            assert release.wait(30)
            return real(*args)
        monkeypatch.setattr(service, "searchable_tier", slow_tier)
        monkeypatch.setattr(service, "RELOAD_CHECK", 0.0)
        assert discovery.search_page("sparse attention").hits  # answered: this request started the reading
        assert reading.wait(30)
        assert discovery.search_page("long documents").hits and discovery.index is before
        release.set()
        discovery.refresh(wait=True)
        assert discovery.index is not before and len(discovery.index) == len(before) + 1
    finally:
        store.close()
