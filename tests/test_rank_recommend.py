"""Personal recommendations (rank/recommend.py) on a real slice of CiteULike-a: the 600 papers most
readers kept, the first 1,200 readers who kept at least three of them, and the titles embedded by the
real default model (MiniLM int8; titles fit in 64 tokens, so the vectors are those of the default 256).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from papersift.errors import BadInput, NotFound
from papersift.index.embed import create_embedder
from papersift.rank.recommend import Library, Recommender

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "citeulike-a"
# a reader's library is picked from titles with a CORE word; recommendations are judged by the wider vocabulary
BIO_CORE = {"protein", "proteins", "genome", "genomes", "gene", "genes", "sequencing", "expression", "yeast", "dna",
            "rna", "transcription", "chromatin"}
BIO = BIO_CORE | {"sequence", "sequences", "alignment", "biology", "genomic", "rnas", "cell", "cells", "molecular",
                  "haplotype", "bioinformatics", "cancer", "metabolic", "evolution", "species", "human"}
NET_CORE = {"social", "tagging", "folksonomies", "folksonomy", "collaborative", "web"}
NET = NET_CORE | {"network", "networks", "community", "communities", "search", "retrieval", "tags", "recommender",
                  "recommendation", "filtering", "graph", "graphs", "world", "hyperlinked", "hypertext", "weblogs",
                  "blogs", "citation", "internet", "online"}
STOP = {"the", "and", "for", "with", "from", "its", "are", "using", "based", "into", "via", "their", "how", "what"}


def words(title: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]{3,}", title.lower()) if w not in STOP]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    titles = (DATA / "titles.txt").read_text(encoding="utf-8", errors="replace").splitlines()
    users = [np.array(line.split()[1:], np.int64) for line in (DATA / "users.dat").read_text().splitlines()]
    counts = np.bincount(np.concatenate(users), minlength=len(titles))
    papers = np.sort(np.argsort(-counts, kind="stable")[:600])
    local = np.full(len(titles), -1)
    local[papers] = np.arange(len(papers))
    libraries = [np.sort(local[u][local[u] >= 0]) for u in users]
    libraries = [lib for lib in libraries if len(lib) >= 3][:1200]
    slice_titles = [titles[p] for p in papers]
    topic = np.array(["bio" if set(words(t)) & BIO else "net" if set(words(t)) & NET else "" for t in slice_titles])
    core = np.array(["bio" if set(words(t)) & BIO_CORE and not set(words(t)) & NET else
                     "net" if set(words(t)) & NET_CORE and not set(words(t)) & BIO else "" for t in slice_titles])
    embedder = create_embedder("minilm:64", tmp_path_factory.mktemp("models"))
    return {"titles": slice_titles, "libraries": libraries, "E": embedder.embed(slice_titles), "topic": topic, "core": core}


@pytest.fixture(scope="module")
def model(data) -> Recommender:
    return Recommender().fit(data["libraries"], data["E"])


def of_topic(data, name: str, n: int, skip: int = 0) -> np.ndarray:
    """n papers squarely about `name`: a core word of it in the title and no word of the other topic."""
    return np.flatnonzero(data["core"] == name)[skip:skip + n]


def test_a_reader_about_a_topic_gets_that_topic_first(data, model):
    for name in ("bio", "net"):
        top = model.top(Library(of_topic(data, name, 5)), 10)
        assert len(top) == 10
        share = np.mean([data["topic"][i] == name for i, _ in top])
        assert share >= 0.6, (name, [data["titles"][i] for i, _ in top])
        assert share > 2 * np.mean(data["topic"] == name)


def test_folded_in_reader_finds_their_held_out_papers(data):
    """A reader left out of the fit, folded in from 80 % of their library, finds the other 20 % far above chance."""
    libraries = data["libraries"]
    big = [u for u in range(len(libraries)) if len(libraries[u]) >= 20][:30]
    rest = [lib for u, lib in enumerate(libraries) if u not in set(big)]
    rec = Recommender().fit(rest, data["E"])
    rng = np.random.default_rng(0)
    percentiles = []
    for u in big:
        lib = rng.permutation(libraries[u])
        held, known = lib[: len(lib) // 5], lib[len(lib) // 5:]
        ranked = [i for i, _ in rec.top(Library(known), 600)]
        percentiles += [ranked.index(i) / len(ranked) for i in held if i in ranked]
    assert np.mean(percentiles) < 0.2  # chance is 0.5


def test_dual_solution_equals_collective_ease_in_closed_form(data, model):
    """x B from the dual (readers + dimensions) equals the primal items × items solution."""
    X = np.zeros((len(data["libraries"]), len(data["E"])))
    for u, lib in enumerate(data["libraries"]):
        X[u, lib] = 1
    warm = np.flatnonzero(X.sum(0) > 0)
    X, E = X[:, warm], data["E"][warm].astype(np.float64)
    l2, alpha = model.params["l2"], model.params["content_weight"]
    P = np.linalg.inv(X.T @ X + alpha * E @ E.T + l2 * np.eye(len(warm)))
    B = np.eye(len(warm)) - P / np.diag(P)
    for u in (0, 7, 300):
        expected = X[u] @ B
        got = model.score(Library(data["libraries"][u]))[warm]
        np.testing.assert_allclose(got, expected, atol=2e-4 * np.abs(expected).max())


def test_a_new_paper_nobody_kept_reaches_the_readers_it_suits(data):
    """A paper with every interaction removed (cold in the model) comes first among the papers nobody kept (a
    "today" feed) for a reader whose library holds the papers closest to it, and within the top 10 % of the
    whole catalog, old papers with readers included; so does one added after the fit."""
    E, libraries = data["E"], data["libraries"]
    new = int(of_topic(data, "bio", 1, skip=3)[0])
    rec = Recommender().fit([lib[lib != new] for lib in libraries], E)
    assert rec.col[new] == -1
    sims = E @ E[new]
    sims[new] = -1
    reader = Library(np.argsort(-sims)[:4])
    assert rec.top(reader, 1, candidates=rec.cold)[0][0] == new
    assert new in [i for i, _ in rec.top(reader, 60)]
    # why: the library papers it resembles, the closest among them
    reasons = [i for i, _ in rec.explain(reader, new)]
    assert set(reasons) <= set(reader.positives.tolist()) and reader.positives[0] in reasons
    # brand new: appended after the fit with its own vector (a copy of a bio paper's title, slightly changed)
    vector = E[new] + 0.05 * E[int(np.argsort(-sims)[0])]
    added = rec.add_items((vector / np.linalg.norm(vector))[None, :])
    assert list(added) == [len(E)]
    assert added[0] in [i for i, _ in rec.top(reader, 60)]
    # not for a reader of the other topic
    assert added[0] not in [i for i, _ in rec.top(Library(of_topic(data, "net", 5)), 50)]


def test_a_dismissal_pushes_the_paper_and_its_near_copy_down(data, model):
    library = Library(of_topic(data, "bio", 6))
    first = model.top(library, 1)[0][0]
    rec = Recommender().fit(data["libraries"], data["E"])
    copy = int(rec.add_items(rec.E[first][None, :] * 0.999 + 0.001 * rec.E[library.positives[0]])[0])
    before = rec.score(library)
    ranked = np.argsort(-before)
    assert list(ranked).index(copy) < 30  # the copy of a top paper scores high from content alone
    dismissed = Library(library.positives, negatives=[first])
    after = rec.score(dismissed)
    ranked_after = list(np.argsort(-after))
    assert ranked_after.index(first) > len(after) / 2
    assert ranked_after.index(copy) > len(after) / 2
    top = [i for i, _ in rec.top(dismissed, 20)]
    assert first not in top and copy not in top
    # a paper unlike the dismissed one keeps its score
    far = int(np.argmin(rec.E @ rec.E[first]))
    assert after[far] == pytest.approx(before[far])


def test_weights_count(data, model):
    bio, net = of_topic(data, "bio", 4), of_topic(data, "net", 4)
    both = np.concatenate([bio, net])
    zero_net = model.score(Library(both, weights=[1] * 4 + [0] * 4))
    np.testing.assert_allclose(zero_net[model.warm], model.score(Library(bio))[model.warm], rtol=1e-4, atol=1e-6)
    lean_bio = model.top(Library(both, weights=[1] * 4 + [0.2] * 4), 10)
    lean_net = model.top(Library(both, weights=[0.2] * 4 + [1] * 4), 10)
    assert sum(data["topic"][i] == "bio" for i, _ in lean_bio) > sum(data["topic"][i] == "bio" for i, _ in lean_net)


def test_explain_names_the_library_papers_behind_a_recommendation(data, model):
    bio, net = of_topic(data, "bio", 3), of_topic(data, "net", 3)
    library = Library(np.concatenate([bio, net]))
    for item, _ in model.top(library, 5):
        reasons = model.explain(library, item)
        assert reasons and all(i in library.positives for i, _ in reasons)
        if data["topic"][item] in ("bio", "net"):
            assert data["topic"][reasons[0][0]] == data["topic"][item], (data["titles"][item], reasons)
    # x B is linear in x: a positive's share is what the item's score loses without it
    item = model.top(library, 1)[0][0]
    full = model.score(library)[item]
    for positive, share in model.explain(library, item, k=len(library.positives)):
        without = model.score(Library(library.positives[library.positives != positive]))[item]
        assert share == pytest.approx(full - without, rel=1e-3, abs=1e-6)


def test_save_and_load_give_identical_scores(tmp_path, data, model):
    model.save(tmp_path / "rec")
    assert (tmp_path / "rec" / "manifest.json").exists()
    loaded = Recommender.load(tmp_path / "rec")
    for lib in (Library(of_topic(data, "bio", 5)), Library(data["libraries"][3], negatives=[0])):
        np.testing.assert_array_equal(loaded.score(lib), model.score(lib))
    assert np.load(tmp_path / "rec" / "K.npy", allow_pickle=False).dtype == np.float32  # plain arrays, no pickles


def test_bad_input(data, model):
    with pytest.raises(BadInput):
        Recommender().score(Library([1]))
    with pytest.raises(NotFound):
        model.score(Library([len(data["E"]) + 5]))
    with pytest.raises(BadInput):
        Library([1, 2], weights=[1.0])
    with pytest.raises(BadInput):
        Recommender(l2=0)
    with pytest.raises(NotFound):
        Recommender.load(Path("/nonexistent/model"))
    # an empty library is not an error: nothing to go on, every score 0
    assert not model.score(Library([])).any()


def test_candidates_score_as_in_the_full_feed(data, model):
    """A "today" feed over some candidates gives the same scores as the full one, dismissals included."""
    rng = np.random.default_rng(1)
    negative = of_topic(data, "net", 1)
    near = np.argsort(-(data["E"] @ data["E"][negative[0]]))[:6]  # the dismissed paper and its closest
    candidates = np.unique(np.concatenate([rng.choice(len(data["E"]), 80, replace=False), near]))
    library = Library(of_topic(data, "bio", 5), negatives=negative)
    assert (model.score(library, near[1:]) < model.score(Library(library.positives), near[1:])).all()
    np.testing.assert_allclose(model.score(library, candidates), model.score(library)[candidates], rtol=1e-5, atol=1e-6)
    top = model.top(library, 10, candidates=candidates)
    assert {i for i, _ in top} <= set(candidates.tolist()) - set(library.positives.tolist()) - set(library.negatives.tolist())
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
