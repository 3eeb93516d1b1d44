"""The in-memory BM25 index (index/lexical.py) on real arXiv papers: right scores, filters, incremental
sync equal to a rebuild, crash safety, hostile queries."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from papersift.index import lexical
from papersift.index.lexical import Analyzer, handles, open_lexical_index, sync_lexical_index
from papersift.ingest.jsonl import parse_arxiv_daily_record
from papersift.models import Paper
from papersift.store import open_store

ARXIV_DAILY = Path(__file__).resolve().parents[2] / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"


@pytest.fixture(scope="module")
def papers() -> list[Paper]:
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        return [parse_arxiv_daily_record(json.loads(line)) for line in itertools.islice(f, 20000, 20400)]


def catalog(path: Path, papers: list[Paper]):
    store = open_store(str(path / "catalog.db"), migrate=True)
    store.upsert_papers(papers)
    return store


def brute_force(store, query: str, k1: float, b: float) -> dict[int, float]:
    """BM25 straight from the formula, one paper at a time."""
    analyzer = Analyzer()
    docs = {}
    for pid, _, title, abstract, authors in store.texts_since(0):
        tf: dict[str, float] = {}
        length = 0.0
        for text, w in ((title, lexical.TITLE_WEIGHT), (abstract, 1.0), (authors, lexical.AUTHOR_WEIGHT)):
            terms = analyzer.terms(text)
            length += w * len(terms)
            for t in terms:
                tf[t] = tf.get(t, 0.0) + w
        docs[pid] = (tf, length)
    n = len(docs)
    avg = sum(length for _, length in docs.values()) / n
    scores: dict[int, float] = {}
    for term in dict.fromkeys(analyzer.terms(query)):
        df = sum(1 for tf, _ in docs.values() if term in tf)
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for pid, (tf, length) in docs.items():
            if term in tf:
                f = tf[term]
                scores[pid] = scores.get(pid, 0.0) + idf * f * (k1 + 1) / (f + k1 * (1 - b + b * length / avg))
    return scores


def test_scores_match_the_formula_and_filters_hold(tmp_path, papers):
    store = catalog(tmp_path, papers)
    index, action = sync_lexical_index(store, tmp_path / "lexical")
    assert action == "built" and len(index) == len(papers)
    for query in ("large language models for code generation", papers[7].title, "Diffusion image synthesis"):
        expected = brute_force(store, query, index.k1, index.b)
        got = index.search(query, 20)
        best = sorted(expected, key=lambda pid: (-expected[pid], pid))[:20]
        assert [pid for pid, _ in got] == best
        assert all(abs(score - expected[pid]) < 1e-3 * max(1.0, expected[pid]) for pid, score in got)
    allowed = np.array([p.id for p in store.iter_papers()][::3], dtype=np.int64)
    hits = index.search("learning", 50, allowed=allowed)
    assert hits and {pid for pid, _ in hits} <= set(allowed.tolist())
    assert index.search("learning", 50, allowed=np.array([], dtype=np.int64)) == []


def test_incremental_sync_equals_a_rebuild(tmp_path, papers):
    store = catalog(tmp_path, papers[:300])
    folder = tmp_path / "lexical"
    sync_lexical_index(store, folder)
    store.upsert_papers(papers[300:320])  # new papers: a delta segment, searchable at once
    changed = papers[4]
    store.upsert_papers([Paper(**{**vars(changed), "version": 9, "id": None,
                                  "title": "Quantum error correction with surface codes"})])
    index, action = sync_lexical_index(store, folder)
    assert action == "21 changed" and len(index.delta.ids) == 21 and len(index) == 320
    rebuilt, _ = sync_lexical_index(store, tmp_path / "fresh")
    for query in ("quantum error correction", papers[310].title, "graph neural networks"):
        a, b = index.search(query, 30), rebuilt.search(query, 30)
        # df of the changed paper's old words lingers until the next merge: same papers, close scores
        assert [p for p, _ in a][:10] == [p for p, _ in b][:10]
        assert np.allclose([s for _, s in a], [s for _, s in b], rtol=0.02)
    changed_id = store.get_paper(changed.arxiv_id).id
    assert index.search("surface codes quantum error correction", 1)[0][0] == changed_id
    assert sync_lexical_index(store, folder)[1] == "up to date"
    reopened = open_lexical_index(folder)
    assert reopened.search(papers[310].title, 5) == index.search(papers[310].title, 5)
    # a delta past MERGE_SHARE of main is merged into a new main
    store.upsert_papers(papers[320:400])
    index, action = sync_lexical_index(store, folder)
    assert action.startswith("merged") and len(index.delta.ids) == 0 and len(index) == 400


def test_a_crash_mid_write_leaves_the_previous_index(tmp_path, papers, monkeypatch):
    store = catalog(tmp_path, papers[:200])
    folder = tmp_path / "lexical"
    before, _ = sync_lexical_index(store, folder)
    store.upsert_papers(papers[200:210])

    def crash(folder, state):
        raise KeyboardInterrupt

    monkeypatch.setattr(lexical, "_write_current", crash)  # dies after writing segment files, before CURRENT
    with pytest.raises(KeyboardInterrupt):
        sync_lexical_index(store, folder)
    monkeypatch.undo()
    survivor = open_lexical_index(folder)
    assert len(survivor) == 200 and survivor.seq == before.seq
    index, action = sync_lexical_index(store, folder)
    assert action == "10 changed" and len(index) == 210
    assert len({p.name.split(".")[0] for p in folder.glob("seg-*")}) == 2  # orphans removed
    (folder / "CURRENT").write_text("{not json")
    assert open_lexical_index(folder) is None
    assert sync_lexical_index(store, folder)[1] == "built"


@pytest.mark.parametrize("query", ["", "   ", '"', "NEAR(", "*", "AND", "x" * 10_000, "ünïcödé ∑ ∫ 𝔸", "the of and"])
def test_hostile_queries_are_answered(tmp_path_factory, papers, query):
    folder = tmp_path_factory.mktemp("lex")
    store = catalog(folder, papers[:50])
    index, _ = sync_lexical_index(store, folder / "lexical")
    assert isinstance(index.search(query, 10), list)


def test_phrases_and_prefixes_are_left_to_fts5():
    assert handles("graph neural networks") and handles("NEAR( * AND")
    assert not handles('"graph neural" networks') and not handles("transform* models")
