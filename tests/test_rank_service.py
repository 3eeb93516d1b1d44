"""Discovery in a long-running server: it notices what `papersift index` has rewritten on disk and
reloads that, and only that."""

from __future__ import annotations

from papersift.index.build import embed_pending, index_folder, lexical_folder, sync_vector_index
from papersift.index.lexical import sync_lexical_index
from papersift.models import Paper
from papersift.rank import service
from papersift.rank.service import Discovery
from papersift.store import open_store


def test_a_running_server_finds_new_papers_by_keyword_before_they_are_embedded(web_settings, monkeypatch):
    store = open_store(web_settings.resolved_database_url)
    data = web_settings.resolved_data_dir
    try:
        discovery = Discovery(store, data)
        before = discovery.index
        new = Paper(title="Power walk: revisiting the random surfer on citation graphs", doi="10.5555/fresh.1",
                    abstract="A random surfer that walks citation graphs with a power-law restart.",
                    authors=("Ada Lovelace",), categories=("cs.IR",))
        store.upsert_papers([new])
        monkeypatch.setattr(service, "RELOAD_CHECK", 0.0)
        assert discovery.search_page(new.title).hits[0].paper_id != "doi:10.5555/fresh.1"  # not indexed yet
        # `papersift index` writes the full text and BM25 first: the server searches them at its next look
        store.sync_fulltext()
        sync_lexical_index(store, lexical_folder(data))
        first = discovery.search_page(new.title).hits[0]
        assert (first.paper_id, first.reason) == ("doi:10.5555/fresh.1", "the title you searched for")
        assert discovery.index is before  # the unchanged vector index was kept, not read again
        # then the embeddings and the vector index: the next look takes the new one
        assert embed_pending(store, discovery.embedder) == 1
        sync_vector_index(store, discovery.embedder, index_folder(data, discovery.embedder))
        discovery.search_page("citation graphs")
        assert discovery.index is not before and len(discovery.index) == len(before) + 1
        assert store.get_paper("10.5555/fresh.1").id in discovery.index
    finally:
        store.close()
