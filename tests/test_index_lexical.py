"""The in-memory BM25 index (index/lexical.py) on real arXiv papers: scores equal to BM25 computed
straight from the formula, filters, an incremental sync equal to a rebuild, crash safety (hard crashes
in a child process included), hostile queries."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from papersift.index import lexical
from papersift.index.lexical import (
    Analyzer,
    LexicalIndex,
    build_segment,
    handles,
    open_lexical_index,
    read_terms,
    sync_lexical_index,
)
from papersift.ingest.jsonl import parse_arxiv_daily_record
from papersift.models import Paper
from papersift.store import open_store

ROOT = Path(__file__).resolve().parents[1]
ARXIV_DAILY = ROOT.parent / "shared" / "data" / "arxiv-daily" / "arxiv_papers.jsonl.gz"
QUERIES = ("large language models for code generation", "Diffusion image synthesis", "graph neural networks",
           "quantum error correction surface codes")


@pytest.fixture(scope="module")
def papers() -> list[Paper]:
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        return [parse_arxiv_daily_record(json.loads(line)) for line in itertools.islice(f, 20000, 20400)]


def catalog(path: Path, papers: list[Paper]):
    store = open_store(str(path / "catalog.db"), migrate=True)
    store.upsert_papers(papers)
    return store


def brute_force(store, query: str, k1: float, b: float) -> dict[int, float]:
    """BM25F-lite straight from the formula, one paper at a time, with no code shared with the index
    beyond the analyzer (and its stopwords and stems)."""
    analyzer = Analyzer()
    docs = {}
    for pid, _, title, abstract, authors in store.texts_since(0):
        tf: dict[str, float] = {}
        length = 0.0
        for text, w in zip((title, abstract, authors), lexical.FIELD_WEIGHTS):
            terms = analyzer.terms(text)
            length += w * len(terms)
            for t in terms:
                tf[t] = tf.get(t, 0.0) + w
        docs[pid] = (tf, length)
    n = len(docs)
    avg = sum(length for _, length in docs.values()) / n
    scores: dict[int, float] = {}
    query_terms = analyzer.terms(query)
    for term in dict.fromkeys(query_terms):
        df = sum(1 for tf, _ in docs.values() if term in tf)
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        qtf = query_terms.count(term)
        q = (lexical.K3 + 1) * qtf / (lexical.K3 + qtf)  # a word the query repeats counts more, saturating
        for pid, (tf, length) in docs.items():
            if term in tf:
                f = tf[term]
                scores[pid] = scores.get(pid, 0.0) + q * idf * f * (k1 + 1) / (f + k1 * (1 - b + b * length / avg))
    return scores


def assert_same_ranking(got: list[tuple[int, float]], expected: dict[int, float], k: int) -> None:
    """Same scores, rank by rank; ids may differ only where two scores tie within float32 rounding."""
    best = sorted(expected, key=lambda pid: (-expected[pid], pid))[:k]
    assert len(got) == len(best)
    for (pid, score), want in zip(got, best):
        assert score == pytest.approx(expected[pid], rel=1e-5)
        assert score == pytest.approx(expected[want], rel=1e-5)


def test_scores_match_the_formula(tmp_path, papers):
    store = catalog(tmp_path, papers)
    index, action = sync_lexical_index(store, tmp_path / "lexical")
    assert action == "built" and len(index) == len(papers)
    assert index._parts is None  # a sync only saves: the weights wait for the first query, as here
    for query in (*QUERIES, papers[7].title, papers[123].abstract, " ".join(papers[50].authors[:2])):
        assert_same_ranking(index.search(query, 20), brute_force(store, query, index.k1, index.b), 20)
    other = LexicalIndex(index.main, k1=0.9, b=0.4)  # k1 and b are run-time choices
    assert_same_ranking(other.search(QUERIES[0], 20), brute_force(store, QUERIES[0], 0.9, 0.4), 20)
    assert index.search(papers[7].title, 1)[0][0] == store.get_paper(papers[7].arxiv_id).id


def test_filters_hold(tmp_path, papers):
    store = catalog(tmp_path, papers[:200])
    index, _ = sync_lexical_index(store, tmp_path / "lexical")
    ids = [p.id for p in store.iter_papers()]
    allowed = np.array(ids[::3] + [0, 10**9, -5], dtype=np.int64)  # unknown and negative ids are ignored
    unfiltered = index.search("learning", 500)
    hits = index.search("learning", 50, allowed=allowed)
    assert hits == [(p, s) for p, s in unfiltered if p in set(ids[::3])][:50]
    assert index.search("learning", 50, allowed=np.array([], dtype=np.int64)) == []
    # sparse huge ids: no lookup table, the same answers
    texts = [(pid * 10**12, t, a, au) for pid, _, t, a, au in store.texts_since(0)]
    sparse = LexicalIndex(build_segment(texts))
    assert sparse._table is None
    assert [(p // 10**12, s) for p, s in sparse.search("learning", 50, allowed=allowed * 10**12)] == hits


def test_incremental_sync_equals_a_rebuild(tmp_path, papers):
    store = catalog(tmp_path, papers[:300])
    folder = tmp_path / "lexical"
    sync_lexical_index(store, folder)
    store.upsert_papers(papers[300:320])  # new papers: a delta segment, searchable at once
    changed = papers[4]
    old_title = changed.title
    store.upsert_papers([Paper(**{**vars(changed), "version": 9, "id": None,
                                  "title": "Quantum error correction with surface codes"})])
    index, action = sync_lexical_index(store, folder)
    assert action == "21 changed" and len(index.delta) == 21 and len(index) == 320
    rebuilt, _ = sync_lexical_index(store, tmp_path / "fresh")
    changed_id = store.get_paper(changed.arxiv_id).id
    for query in (*QUERIES, papers[310].title, old_title, papers[4].abstract):
        a, b = index.search(query, 30), rebuilt.search(query, 30)
        assert [p for p, _ in a] == [p for p, _ in b]
        assert np.allclose([s for _, s in a], [s for _, s in b], rtol=1e-6)  # df, N, avglen exact
    assert index.search("surface codes quantum error correction", 1)[0][0] == changed_id
    assert sync_lexical_index(store, folder)[1] == "up to date"
    reopened = open_lexical_index(folder)
    assert reopened.search(papers[310].title, 5) == index.search(papers[310].title, 5)
    store.upsert_papers(papers[320:325])  # a second delta sync rebuilds the delta, the first one's papers kept
    index, action = sync_lexical_index(store, folder)
    assert action == "5 changed" and len(index.delta) == 26 and len(index) == 325
    assert len(list(folder.glob("seg-*"))) == 2
    store.upsert_papers(papers[325:400])  # a delta past MERGE_SHARE of main is merged into a new main
    index, action = sync_lexical_index(store, folder)
    assert action.startswith("merged") and len(index.delta) == 0 and len(index) == 400
    assert len(list(folder.glob("seg-*"))) == 1
    assert "quantum" in read_terms(folder)


def test_a_crash_mid_write_leaves_the_previous_index(tmp_path, papers, monkeypatch):
    store = catalog(tmp_path, papers[:200])
    folder = tmp_path / "lexical"
    before, _ = sync_lexical_index(store, folder)
    store.upsert_papers(papers[200:210])

    def crash(folder, manifest):
        raise KeyboardInterrupt

    monkeypatch.setattr(lexical, "_write_manifest", crash)  # dies after writing the segment, before CURRENT
    with pytest.raises(KeyboardInterrupt):
        sync_lexical_index(store, folder)
    monkeypatch.undo()
    survivor = open_lexical_index(folder)
    assert len(survivor) == 200 and survivor.seq == before.seq
    assert survivor.search(QUERIES[0], 10) == before.search(QUERIES[0], 10)
    index, action = sync_lexical_index(store, folder)
    assert action == "10 changed" and len(index) == 210
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith("seg-")) == sorted(
        [read_manifest_names(folder)["main"], read_manifest_names(folder)["delta"]])  # the orphan is gone


def read_manifest_names(folder: Path) -> dict:
    manifest = json.loads((folder / "CURRENT").read_text())
    return {k: manifest[k]["name"] for k in ("main", "delta") if manifest[k]}


CHILD = textwrap.dedent("""
    import os, sys
    import numpy as np
    from papersift.index import lexical
    from papersift.store import open_store
    where = sys.argv[3]
    if where == "mid-segment":  # the process dies (no cleanup) after two of a segment's files
        real, written = np.save, []
        def save(*a, **k):
            real(*a, **k)
            written.append(1)
            if len(written) == 2:
                os._exit(9)
        np.save = save
    else:  # dies after the segment is renamed into place, before CURRENT names it
        def write_manifest(folder, manifest):
            os._exit(9)
        lexical._write_manifest = write_manifest
    lexical.sync_lexical_index(open_store(sys.argv[1]), sys.argv[2])
""")


@pytest.mark.parametrize("where", ["mid-segment", "before-manifest"])
def test_a_killed_sync_leaves_the_previous_index(tmp_path, papers, where):
    store = catalog(tmp_path, papers[:150])
    folder = tmp_path / "lexical"
    before, _ = sync_lexical_index(store, folder)
    store.upsert_papers(papers[150:160])
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "catalog.db"), str(folder), where],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    assert child.returncode == 9, child.stderr
    assert any(p.name.startswith((".tmp-seg-", "seg-")) and p.name not in read_manifest_names(folder).values()
               for p in folder.iterdir())  # the crash left debris
    survivor = open_lexical_index(folder)
    assert len(survivor) == 150 and survivor.search(QUERIES[2], 10) == before.search(QUERIES[2], 10)
    index, action = sync_lexical_index(store, folder)
    assert action == "10 changed" and len(index) == 160
    assert {p.name for p in folder.iterdir()} == {"CURRENT", "LOCK", *read_manifest_names(folder).values()}


def test_damaged_or_differently_built_indexes_are_rebuilt(tmp_path, papers, monkeypatch):
    store = catalog(tmp_path, papers[:100])
    folder = tmp_path / "lexical"
    sync_lexical_index(store, folder)
    rows = folder / read_manifest_names(folder)["main"] / "rows.npy"
    data = bytearray(rows.read_bytes())
    data[-3] ^= 0xFF  # one flipped bit inside the postings
    rows.write_bytes(bytes(data))
    assert open_lexical_index(folder) is None
    assert sync_lexical_index(store, folder)[1] == "built"
    (folder / "CURRENT").write_text("{not json")
    assert open_lexical_index(folder) is None
    assert sync_lexical_index(store, folder)[1] == "built"
    monkeypatch.setattr(lexical, "FIELD_WEIGHTS", (3.0, 1.0, 1.0))  # saved tfs are stale: rebuild
    assert open_lexical_index(folder) is None
    assert sync_lexical_index(store, folder)[1] == "built"
    assert json.loads((folder / "CURRENT").read_text())["analysis"]["field_weights"] == [3.0, 1.0, 1.0]


def test_a_paper_seen_twice_while_building_keeps_its_last_text(papers):
    p, q = papers[0], papers[1]
    seg = build_segment([(1, p.title, p.abstract, ""), (2, q.title, q.abstract, ""),
                         (1, "Quantum error correction", "", "")])
    index = LexicalIndex(seg)
    clean = LexicalIndex(build_segment([(2, q.title, q.abstract, ""), (1, "Quantum error correction", "", "")]))
    assert len(index) == 2 and sorted(seg.ids.tolist()) == [1, 2] and len(seg.hashes) == len(clean.main.hashes)
    for query in ("quantum error correction", p.title, q.title, p.abstract):
        assert index.search(query, 5) == clean.search(query, 5)
    assert index.search("quantum error correction", 5)[0][0] == 1


@pytest.mark.parametrize("query", ["", "   ", '"', "NEAR(", "*", "AND", "x" * 10_000, "ünïcödé ∑ ∫ 𝔸", "the of and",
                                   "a" * 50, "\x00\n\t", "transformer " * 2000, "🙂 learning 🙂"])
def test_hostile_queries_are_answered(papers, query):
    index = hostile_index(papers)
    hits = index.search(query, 10)
    assert isinstance(hits, list) and len(hits) <= 10
    assert all(isinstance(p, int) and s > 0 for p, s in hits)


_HOSTILE: list[LexicalIndex] = []


def hostile_index(papers) -> LexicalIndex:
    if not _HOSTILE:
        _HOSTILE.append(LexicalIndex(build_segment((i, p.title, p.abstract, " ".join(p.authors))
                                                   for i, p in enumerate(papers[:50], 1))))
    return _HOSTILE[0]


def test_edge_cases(papers):
    index = hostile_index(papers)
    assert index.search("learning", 0) == [] and index.search("learning", -3) == []
    assert len(index.search("learning", 10_000)) < 50
    assert LexicalIndex(lexical.Segment.empty()).search("learning", 10) == []
    assert LexicalIndex(build_segment([])).search("learning", 10) == []


def test_phrases_and_prefixes_are_left_to_fts5():
    assert handles("graph neural networks") and handles("NEAR( * AND")
    assert not handles('"graph neural" networks') and not handles("transform* models")
