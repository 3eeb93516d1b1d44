"""Index step, hybrid search and related papers on a small real subset with the real model, on each
catalog backend (SQLite, PostgreSQL)."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import BACKENDS, drop_postgres_database, open_postgres_store

from papersift.index.build import build_index, embed_pending, index_folder, lexical_folder, model_key, sync_vector_index
from papersift.index.embed import create_embedder
from papersift.index.lexical import open_lexical_index
from papersift.index.vectors import open_or_none
from papersift.ingest.jsonl import parse_arxiv_daily_record
from papersift.models import Paper
from papersift.rank.related import related_papers
from papersift.rank.search import FusionParams, Searcher
from papersift.store import open_store
from papersift.store.copy import copy_catalog
from papersift.store.fulltext import Filters

ARXIV_DAILY = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"
N = 300


@pytest.fixture(scope="module")
def papers() -> list[Paper]:
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        return [parse_arxiv_daily_record(json.loads(line)) for line in itertools.islice(f, 5000, 5000 + N)]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return create_embedder("minilm", tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    """Module-wide here: each backend's catalog is built and indexed once for the module."""
    return request.param


@pytest.fixture(scope="module")
def sqlite_indexed(tmp_path_factory, papers, embedder):
    """The papers in a SQLite catalog, indexed: full text, BM25 and vectors in its data dir."""
    data = tmp_path_factory.mktemp("data")
    store = open_store(str(data / "catalog.db"), migrate=True)
    store.upsert_papers(papers)
    report = build_index(store, embedder, data)
    assert (report.fulltext_synced, report.embedded, report.vectors) == (N, N, N)
    yield store, data
    store.close()


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, sqlite_indexed, embedder, backend):
    """(store, vector index, data dir). PostgreSQL: the SQLite catalog copied over (its vectors with it,
    so nothing is embedded twice), then indexed from the copy in a data dir of its own."""
    if backend == "sqlite":
        store, data = sqlite_indexed
        yield store, open_or_none(index_folder(data, embedder), expect_model=model_key(embedder)), data
        return
    url, store = open_postgres_store()
    data = tmp_path_factory.mktemp("data-postgresql")
    try:
        assert copy_catalog(sqlite_indexed[0], store, fulltext=False).verified
        report = build_index(store, embedder, data)
        assert (report.fulltext_synced, report.embedded, report.vectors) == (N, 0, N)
        yield store, open_or_none(index_folder(data, embedder), expect_model=model_key(embedder)), data
    finally:
        store.close()
        drop_postgres_database(url)


def test_every_paper_is_found_by_its_own_title(indexed, embedder, papers):
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    misses = [p.arxiv_id for p in papers[:60] if searcher.search(p.title, limit=1)[0].paper_id != p.arxiv_id]
    assert not misses


def test_identifier_queries_come_first(indexed, embedder, papers):
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    target = papers[17]
    for query in (target.arxiv_id, f"arXiv:{target.arxiv_id}v2", f"https://arxiv.org/abs/{target.arxiv_id}"):
        hits = searcher.search(query, limit=5)
        assert hits[0].paper_id == target.arxiv_id and hits[0].reason == "the identifier you searched for"


def test_meaning_finds_what_words_miss(indexed, embedder, papers):
    store, index, data = indexed
    target = papers[42]
    # the paper's first abstract sentence, as a query, finds it among the top results by meaning alone
    sentence = target.abstract.split(". ")[0]
    dense_only = Searcher(store, embedder, index, FusionParams(lexical_weight=0.0), bm25=open_lexical_index(lexical_folder(data)))
    assert target.arxiv_id in [h.paper_id for h in dense_only.search(sentence, limit=5)]


def test_a_pasted_abstract_finds_its_paper_on_bm25_without_spelling(indexed, embedder, papers, monkeypatch):
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    target = papers[23]
    words = target.abstract.split()
    query = " ".join(words[:40]) + ' "quoted" words and a star* ' + " ".join(words[40:200])  # 200+ words
    asked = []
    monkeypatch.setattr(store, "search_fulltext", lambda *a, **k: asked.append("fts5") or [])
    monkeypatch.setattr(store, "spelling_corrections", lambda *a, **k: asked.append("spelling") or {})
    page = searcher.search_page(query, limit=3)
    assert page.hits[0].paper_id == target.arxiv_id
    assert asked == []  # its quotes and star are punctuation (no FTS5 phrase search), no spelling check
    assert searcher.search_page("transfomer", limit=3) is not None and asked == ["spelling"]  # typed: checked


def test_a_pasted_draft_paragraph_is_searched_without_its_citation_marks(indexed, embedder, papers):
    """Numbered marks point into the writer's bibliography: "[12]" would match papers that say "12"."""
    from papersift.rank.search import without_citation_marks

    assert without_citation_marks("as shown in [4, 7–9] and by [12]. Graphs [3;5] [a]") == \
        "as shown in and by. Graphs [a]"
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    words = papers[11].abstract.split()[:60]
    marked = " ".join(w + (f" [{i}, {i + 2}–{i + 4}]" if i % 9 == 8 else "") for i, w in enumerate(words))
    clean = " ".join(words)
    page = searcher.search_page(marked, limit=10)
    assert page.query == clean and "[" not in page.query
    assert [h.paper_id for h in page.hits] == [h.paper_id for h in searcher.search(clean, limit=10)]
    assert page.hits[0].paper_id == papers[11].arxiv_id
    # a typed query keeps its brackets: it is searched as written
    assert searcher.search_page("graph [2]", limit=3).query == "graph [2]"


def test_filters_paging_and_reasons(indexed, embedder, papers):
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    category = papers[0].categories[0]
    hits = searcher.search("learning", limit=20, filters=Filters(category=category))
    assert hits and all(category in store.get_paper(h.paper_id).categories for h in hits)
    page1, page2 = searcher.search("learning", limit=5), searcher.search("learning", limit=5, offset=5)
    assert not {h.paper_id for h in page1} & {h.paper_id for h in page2}
    assert [h.paper_id for h in page1 + page2] == [h.paper_id for h in searcher.search("learning", limit=10)]
    assert all(h.reason for h in page1)
    assert searcher.search("learning", filters=Filters(category="no.such")) == []


@pytest.mark.parametrize("query", ["", "   ", '"', "NEAR(", "*", "AND", "x" * 10_000, "ünïcödé ∑ ∫ 𝔸",
                                   "'; DROP TABLE papers; --", "(((", "title:foo", "10.1145/", "arXiv:"])
def test_hostile_queries_are_answered(indexed, embedder, query):
    store, index, data = indexed
    hits = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data))).search(query, limit=5)
    assert isinstance(hits, list)
    assert store.count_papers() == N


def test_related_papers_exclude_the_paper_and_share_a_subject(indexed, embedder, papers):
    store, index, data = indexed
    key = model_key(embedder)
    for paper in papers[:20]:
        hits = related_papers(store, index, key, embedder.dim, paper.arxiv_id, k=5)
        assert len(hits) == 5 and paper.arxiv_id not in [h.paper_id for h in hits]
        assert all(h.reason.startswith("similar content") for h in hits)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_papers_that_readers_save_together_become_related(tmp_path, indexed, embedder, papers):
    store, index, data = indexed
    key = model_key(embedder)
    paper = papers[11]
    before = [h.paper_id for h in related_papers(store, index, key, embedder.dim, paper.arxiv_id, k=10)]
    # a paper meaning alone does not list, saved with it by three readers
    outsider = next(p for p in reversed(papers) if p.arxiv_id not in before and p.arxiv_id != paper.arxiv_id)
    readers = [store.create_user(f"co-reader-{i}") for i in range(3)]
    try:
        for user in readers:
            for p in (paper, outsider):
                store.add_interaction(user.id, store.get_paper(p.arxiv_id).id, "save")
        hits = related_papers(store, index, key, embedder.dim, paper.arxiv_id, k=10)
        listed = {h.paper_id: h for h in hits}
        assert outsider.arxiv_id in listed and "3 readers saved both" in listed[outsider.arxiv_id].reason
        assert len(hits) == 10 and paper.arxiv_id not in listed
    finally:
        for user in readers:
            store.delete_user(user.id)
    assert [h.paper_id for h in related_papers(store, index, key, embedder.dim, paper.arxiv_id, k=10)] == before


def test_crash_mid_embedding_resumes_and_index_stays_consistent(tmp_path, papers, embedder, empty_store):
    store = empty_store
    store.upsert_papers(papers[:120])

    class Crashing:
        """The real embedder, failing on its third batch (a crash mid-run)."""
        name, version, dim = embedder.name, embedder.version, embedder.dim
        calls = 0

        def embed(self, texts, batch_size=32):
            Crashing.calls += 1
            if Crashing.calls == 3:
                raise KeyboardInterrupt
            return embedder.embed(texts, batch_size)

    with pytest.raises(KeyboardInterrupt):
        embed_pending(store, Crashing(), batch=40, seconds_per_batch=None)
    assert len(store.papers_to_embed(model_key(embedder))) == 40  # two batches of 40 were saved
    # a stale index file from before the crash is brought in step, not trusted
    folder = tmp_path / "vectors"
    sync_vector_index(store, embedder, folder)
    assert embed_pending(store, embedder, batch=40, seconds_per_batch=None) == 40
    index, action = sync_vector_index(store, embedder, folder)
    assert len(index) == 120 and "40 new" in action
    ids, vectors = store.load_embeddings(model_key(embedder), embedder.dim)
    found, _ = index.search(vectors[7], 1)
    assert int(np.asarray(found).reshape(-1)[0]) == ids[7]
    # a paper whose text changes is re-embedded and its vector replaced in the index
    changed = papers[5]
    store.upsert_papers([Paper(**{**vars(changed), "version": 9, "title": "Protein folding with graph networks",
                                  "abstract": "We fold proteins.", "id": None})])
    assert embed_pending(store, embedder) == 1
    index, action = sync_vector_index(store, embedder, folder)
    assert "1 changed" in action
    query = embedder.embed(["Protein folding with graph networks. We fold proteins."])[0]
    found, _ = index.search(query, 1)
    assert int(np.asarray(found).reshape(-1)[0]) == store.get_paper(changed.arxiv_id).id
    # a corrupt index file is rebuilt from the catalog
    for f in folder.rglob("*"):
        if f.is_file() and f.suffix != ".json":
            f.write_bytes(b"garbage")
    index, action = sync_vector_index(store, embedder, folder)
    assert len(index) == 120 and action.startswith("built")


def test_index_runs_update_the_saved_index_in_place(tmp_path, papers, embedder, empty_store):
    """build_index reads the saved vector index while the embedder works, then brings it in step: a run
    with nothing new leaves it as it is, a new paper is added to it (not a rebuild)."""
    store = empty_store
    store.upsert_papers(papers[:60])
    first = build_index(store, embedder, tmp_path)
    assert first.embedded == 60 and first.index_action.startswith("built") and first.vectors == 60
    again = build_index(store, embedder, tmp_path)
    assert (again.embedded, again.index_action, again.lexical_action) == (0, "up to date", "up to date")
    store.upsert_papers([papers[60]])
    third = build_index(store, embedder, tmp_path)
    assert third.embedded == 1 and third.index_action.startswith("updated: +1 new") and third.vectors == 61
    index = open_or_none(index_folder(tmp_path, embedder), expect_model=model_key(embedder))
    vector = store.paper_embedding(model_key(embedder), store.get_paper(papers[60].arxiv_id).id, embedder.dim)
    assert int(np.asarray(index.search(vector, 1)[0]).reshape(-1)[0]) == store.get_paper(papers[60].arxiv_id).id


@pytest.mark.parametrize("typed, meant", [("clasification", "classification"), ("reasonnig", "reasoning"),
                                          ("detecton", "detection"), ("benchamrk", "benchmark")])
def test_misspelt_words_find_what_the_right_spelling_finds(indexed, embedder, typed, meant):
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    page = searcher.search_page(f"{typed} models", limit=10)
    assert page.corrections == {typed: meant} and page.query == f"{meant} models"
    right = [h.paper_id for h in searcher.search(f"{meant} models", limit=10)]
    assert [h.paper_id for h in page.hits] == right


def test_real_words_and_long_texts_are_not_corrected(indexed, embedder, papers):
    store, index, data = indexed
    assert store.spelling_corrections("reasoning benchmarks for detection") == {}
    assert store.spelling_corrections(papers[3].abstract) == {}  # pasted, not typed
    # a word no paper contains and nothing in the vocabulary resembles stays as typed
    assert store.spelling_corrections("zyxwvutsr") == {}


def test_a_rare_real_word_is_not_bent_into_a_common_short_one(empty_store):
    """A stem only proposes a correction: the written word must be within the typo's edits of what was
    typed (SciFact claims had "anthrax" → "anti", "insomnia" → "into", "drowning" → "down")."""
    common = "Anti inflammatory drugs go into trials and down regulate transformers in the cells."
    empty_store.upsert_papers([Paper(title=f"Study {n}", abstract=common, doi=f"10.5555/s.{n}") for n in range(40)]
                              + [Paper(title="Anthrax toxins", abstract="Anthrax spores.", doi="10.5555/s.a")])
    empty_store.sync_fulltext()
    assert empty_store.spelling_corrections("anthrax insomnia drowning") == {}
    # a real typo is still corrected, to a word as the papers write it
    assert empty_store.spelling_corrections("trasformers") == {"trasformers": "transformers"}


def test_real_words_are_kept_however_rare_in_the_catalog(empty_store):
    """"surfer" is in one paper and "suffer" in sixty, one edit apart: an English word is never bent into
    another (a new paper, "Power Walk: Revisiting the Random Surfer", was not found by its own title
    while "surfer" became "suffer"). "resnet" is no English word, and "reset" is common: alone it reads as
    a typo, but not beside "backbone", since a paper holds both."""
    common = "Random models suffer from noise, transformers suffer from bias, and we reset the weights."
    empty_store.upsert_papers([Paper(title=f"Study {n}", abstract=common, doi=f"10.5555/s.{n}") for n in range(60)]
                              + [Paper(title="Power walk: revisiting the random surfer", doi="10.5555/s.p",
                                       abstract="The surfer of PageRank walks at random."),
                                 Paper(title="A resnet backbone for detection", doi="10.5555/s.r",
                                       abstract="We train a resnet backbone.")])
    empty_store.sync_fulltext()
    assert empty_store.spelling_corrections("surfer") == {}
    assert empty_store.spelling_corrections("Power Walk: Revisiting the Random Surfer") == {}
    assert empty_store.spelling_corrections("resnet") == {"resnet": "reset"}
    assert empty_store.spelling_corrections("resnet backbone") == {}
    # no paper holds "resnet" beside "transformers": no context, so the rule stands as before
    assert empty_store.spelling_corrections("resnet transformers") == {"resnet": "reset"}
    # a typo no paper holds is corrected whatever surrounds it
    assert empty_store.spelling_corrections("random trasformers") == {"trasformers": "transformers"}


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL keeps its vocabulary in a table: nothing to warm
def test_a_server_reads_the_spelling_vocabulary_once_and_again_after_a_sync(empty_store):
    store = empty_store
    store.upsert_papers([Paper(title=f"Study {n}", abstract="Transformers classify proteins.", doi=f"10.5555/w.{n}")
                         for n in range(30)])
    store.sync_fulltext()
    cold = store.spelling_corrections("trasformers protiens")
    assert cold == {"trasformers": "transformers", "protiens": "proteins"}
    store.warm_spelling(wait=True)
    statements = []
    store.conn.set_trace_callback(statements.append)
    try:
        assert store.spelling_corrections("trasformers protiens") == cold
        assert store.spelling_corrections("ribosme") == {}  # a prefix never asked for: no query either
    finally:
        store.conn.set_trace_callback(None)
    assert not [s for s in statements if "papers_fts_vocab" in s]  # every prefix came from memory
    # new words arrive: syncing drops the vocabulary read before, and it is read again
    store.upsert_papers([Paper(title=f"Ribosome {n}", abstract="Ribosomes.", doi=f"10.5555/r.{n}") for n in range(30)])
    store.sync_fulltext()  # which starts the new read: waiting joins it
    store.warm_spelling(wait=True)
    statements.clear()
    store.conn.set_trace_callback(statements.append)
    try:
        assert store.spelling_corrections("ribosme") == {"ribosme": "ribosome"}
    finally:
        store.conn.set_trace_callback(None)
    assert not [s for s in statements if "papers_fts_vocab" in s]


def test_a_searched_title_finds_its_paper_first_even_when_its_abstract_strays(empty_store, embedder, tmp_path):
    """A known-item search: the query is a paper's title word for word. Fusion weighted to meaning puts
    the neighbour whose abstract is about the title's topic first; the title rule puts the paper first."""
    title = "Sparse attention for long document summarization"
    empty_store.upsert_papers([
        Paper(title=title, abstract="We study how bakers knead dough and proof bread at home.", doi="10.5555/t.1"),
        Paper(title="Summarizing long documents with sparse attention", doi="10.5555/t.2",
              abstract="Sparse attention lets transformers summarize long documents."),
        *[Paper(title=f"Unrelated study {n} of soil", abstract="Soil and rain.", doi=f"10.5555/u.{n}") for n in range(8)]])
    build_index(empty_store, embedder, tmp_path)
    index = open_or_none(index_folder(tmp_path, embedder), expect_model=model_key(embedder))
    bm25 = open_lexical_index(lexical_folder(tmp_path))
    meaning_only = FusionParams(lexical_weight=0.0, dense_weight=1.0)
    searcher = Searcher(empty_store, embedder, index, meaning_only, bm25=bm25)
    dense_first = searcher.dense(title, 2, None)[0][0]
    assert empty_store.get_papers([dense_first])[0].doi == "10.5555/t.2"  # what fusion alone would rank first
    hits = searcher.search(f"  {title.upper()}. ", limit=3)  # case, spaces and punctuation aside
    assert hits[0].paper_id == "doi:10.5555/t.1" and hits[0].reason == "the title you searched for"
    assert hits[1].paper_id == "doi:10.5555/t.2"
    # a longer query that merely contains the title is no title search
    assert searcher.search(f"{title} in practice", limit=1)[0].paper_id == "doi:10.5555/t.2"


def test_edit_distance_counts_transpositions_once():
    from papersift.store.spelling import edit_distance, stem_distance

    assert edit_distance("protien", "protein", 2) == 1
    assert edit_distance("kitten", "sitting", 5) == 3
    assert edit_distance("abcdef", "uvwxyz", 2) == 3  # gives up past the limit
    assert stem_distance("trasformers", "transform", 2) == 1.5  # suffix beyond the stem: half an edit
    assert stem_distance("protien", "pro", 2) > 2  # a stem much shorter than the word is no candidate


def test_phrases_and_prefixes_are_searched_by_the_catalogs_full_text(indexed, embedder, papers):
    store, index, data = indexed
    searcher = Searcher(store, embedder, index, bm25=open_lexical_index(lexical_folder(data)))
    lexical = searcher.lexical('"language models"', 50, None)
    assert lexical and all("language model" in (store.get_paper(pid).title + " " + store.get_paper(pid).abstract).lower()
                           for pid, _ in lexical)
    assert searcher.lexical("transform*", 50, None) == store.search_fulltext("transform*", 50)
    assert searcher.lexical("transformer models", 50, None) != store.search_fulltext("transformer models", 50)


def test_a_missing_dictionary_names_the_install(monkeypatch):
    from papersift.errors import MissingExtra
    from papersift.store import spelling

    def missing(name):
        raise ModuleNotFoundError(name)
    monkeypatch.setattr(spelling.importlib.resources, "files", missing)
    spelling.english_words.cache_clear()
    try:
        with pytest.raises(MissingExtra) as info:
            spelling.english_words()
        assert "pyspellchecker" in info.value.message and "pip install" in info.value.hint
    finally:
        monkeypatch.undo()
        spelling.english_words.cache_clear()
    assert "surfer" in spelling.english_words()
