"""Related papers: copies of a paper (another record with the same title and first author) never show,
however many of them sit among the nearest neighbours, and the list is still filled to k."""

from __future__ import annotations

import datetime as dt

import numpy as np

from papersift.index.vectors import ExactIndex
from papersift.models import Paper
from papersift.rank.related import related_papers

MODEL, DIM = "test-model@1", 8


def _paper(n: int, title: str, author: str) -> Paper:
    return Paper(arxiv_id=f"2601.{n:05d}", title=title, abstract=f"Abstract of paper {n}.", authors=(author,),
                 categories=("cs.LG",), submitted=dt.date(2026, 1, 5))


def test_copies_are_dropped_and_the_list_is_filled(store):
    rng = np.random.default_rng(0)
    base = rng.standard_normal(DIM)
    me = _paper(1, "Sparse attention for long documents", "Ada Lovelace")
    # 6 records of one neighbour and 2 of the paper itself, all closer than any other paper
    neighbour = [_paper(10 + i, "Long context transformers, revisited", "Grace Hopper") for i in range(6)]
    mine = [_paper(20 + i, "Sparse Attention for Long Documents.", "A. Lovelace") for i in range(2)]
    others = [_paper(30 + i, f"Distinct paper number {i}", f"Author {i}") for i in range(12)]
    papers = [me, *neighbour, *mine, *others]
    store.upsert_papers(papers)
    ids = [store.get_paper(p.arxiv_id).id for p in papers]
    # closeness falls with position in `papers` (the i-th turned i steps away from `base`): copies first,
    # then the distinct ones in order
    away = rng.standard_normal(DIM)
    away -= (away @ base) / (base @ base) * base
    base, away = base / np.linalg.norm(base), away / np.linalg.norm(away)
    vectors = np.stack([base + 0.1 * i * away for i in range(len(papers))])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    pending = {pid: seq for pid, seq, *_ in store.papers_to_embed(MODEL, limit=100)}
    store.save_embeddings(MODEL, [(i, pending[i]) for i in ids], vectors)
    index = ExactIndex(DIM, model=MODEL)
    index.add(np.array(ids), vectors)

    hits = related_papers(store, index, MODEL, DIM, me.arxiv_id, k=5)

    refs = [h.paper_id for h in hits]
    assert len(hits) == 5
    assert sum(r in {p.arxiv_id for p in neighbour} for r in refs) == 1  # one record of the neighbour
    assert not set(refs) & {p.arxiv_id for p in [me, *mine]}  # never the paper itself, in any record
    assert refs[1:] == [p.arxiv_id for p in others[:4]]  # the rest in order of closeness
    assert all(h.paper is not None and h.paper.arxiv_id == h.paper_id for h in hits)  # hits carry their paper
