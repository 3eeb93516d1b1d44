"""A static embedding tier distilled from all-MiniLM-L6-v2: a token → vector table and a mean, no network.

Why: MiniLM int8 embeds ~28 abstracts/s on 2 cores (bench/results/embed_speed.json), so a bulk import
of a million papers would wait ten days to become searchable. The static table embeds thousands a
second on one core; the catalog is re-embedded with the full model later (the two embedders have
different `version`s, so their vectors never mix).

The recipe is model2vec's (MinishLab/model2vec, `distill`), re-implemented on our own ONNX graph with numpy:

  1. every WordPiece token of MiniLM's vocabulary except [unusedN] and the five special tokens runs
     through the model on its own, as `[SEP] token [CLS]`, and its vector is the mean of the three
     output states (before MiniLM's pooling normalisation). model2vec found the reversed specials better;
     measured here too (bench/results/static_tier.json, "recipe_variants"): [CLS] token [SEP] with the
     token's own output position, or with the mean, both retrieve worse on SciFact and on arXiv kNN;
  2. PCA (centred, numpy SVD) down to `dim`, with each axis's sign fixed so a rebuild gives the same table;
  3. SIF weighting a / (a + p(rank)), a = 1e-4, where p is a Zipf distribution over the token's rank in
     the vocabulary (BERT's vocabulary is roughly frequency-ordered), so a text's vector is carried by
     its content words: "," ends up at 0.5 % of "protein"'s length, "the" at 20 % (BERT lists ~1,000
     single characters before "the", so the rank flatters common words a little).

A text's vector is the L2-normalised sum of its tokens' rows (no [CLS]/[SEP]; [UNK] and special tokens
count for nothing, as in model2vec; the first 512 tokens of the first 8,192 characters). A text with no
usable token (empty, whitespace, only unknown symbols) gets `empty`: what MiniLM makes of `[CLS] [SEP]`,
put through the same PCA, so every row stays a unit vector and cosine stays defined downstream.

The table is cached like onnx_minilm's models: one safetensors file per (weights sha, recipe, dim) in the
models folder, written to a temp name, fsync'd and os.replace'd, with a sidecar .json of size and sha256
checked on every load; a damaged file is distilled again (~30 s on one core) instead of being used.
Bump RECIPE_VERSION whenever the table would change: it is part of the embedder's `version`.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from papersift.errors import BadInput, MissingExtra
from papersift.index import onnx_minilm
from papersift.index.embed import MINILM_NAME, _check_texts, _usable_cores

log = logging.getLogger(__name__)

STATIC_NAME = MINILM_NAME + "-static"
RECIPE_VERSION = "1"
DEFAULT_DIM = 256
SIF_COEFFICIENT = 1e-4  # model2vec's default; 3e-5 and 3e-4 measured no better here
# int8 distils in ~2/3 of fp32's time and its table retrieves as well (bench/results/static_tier.json).
DISTILL_PRECISION = "int8"
MAX_TOKENS = 512
MAX_CHARS = MAX_TOKENS * 16  # no 512-token text is longer; cutting first keeps tokenising a full text cheap
UNUSED_TOKEN = re.compile(r"\[unused\d+\]")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
FORWARD_BATCH = 512  # token sequences per ONNX run during distillation: ~20 MB of activations


# ---- distillation ------------------------------------------------------------------------------------

def read_vocab(model_dir: Path) -> list[str]:
    """MiniLM's WordPiece vocabulary, token strings by id, from tokenizer.json."""
    vocab = json.loads((Path(model_dir) / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    tokens = [""] * len(vocab)
    for token, index in vocab.items():
        tokens[index] = token
    return tokens


def content_token_ids(tokens: list[str]) -> np.ndarray:
    """Ids of the tokens that get a vector, in id order, which is also their Zipf rank order.
    [unusedN] never occur in text (model2vec drops them too); the special tokens are markup, not content."""
    return np.array([i for i, t in enumerate(tokens) if not UNUSED_TOKEN.fullmatch(t) and t not in SPECIAL_TOKENS],
                    dtype=np.int64)


def open_hidden_session(cache_dir: Path, model_dir: Path, precision: str, threads: int):
    """An onnxruntime session of MiniLM that also outputs the last hidden states [batch, seq, 384]:
    the cached sentence graph ends in a normalised mean, and the recipe needs the states before it."""
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper
    except ImportError as e:
        raise MissingExtra(e.name or "onnxruntime", "embed") from None
    path = onnx_minilm.ensure_model(cache_dir, precision, model_dir)
    model = onnx.load(str(path))
    # The encoder's last op is its last LayerNormalization; pooling follows it (onnx_minilm.build_graph).
    last_norm = [node for node in model.graph.node if node.op_type == "LayerNormalization"][-1]
    hidden = last_norm.output[0]
    model.graph.output.append(helper.make_tensor_value_info(hidden, TensorProto.FLOAT, ["batch", "seq", None]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session, hidden


def run_states(session, hidden: str, sequences: np.ndarray) -> np.ndarray:
    """Mean over positions of the last hidden states of equal-length id sequences: float32 [n, 384]."""
    out = []
    for start in range(0, len(sequences), FORWARD_BATCH):
        batch = sequences[start:start + FORWARD_BATCH]
        feed = {"input_ids": batch, "attention_mask": np.ones_like(batch)}
        out.append(session.run([hidden], feed)[0].mean(axis=1))
    return np.concatenate(out).astype(np.float32)


def distill_states(model_dir: Path, cache_dir: Path, *, precision: str = DISTILL_PRECISION,
                   threads: int = 1) -> dict:
    """The expensive step, once per model: every content token's MiniLM vector (mean of `[SEP] t [CLS]`),
    and the vector of the empty text `[CLS] [SEP]`. Returns {"token_ids", "states", "empty", "vocab_size",
    "precision", "pooling"}: distill() takes it back as `states` to make tables of several dims from one run."""
    tokens = read_vocab(model_dir)
    cls_id, sep_id = tokens.index("[CLS]"), tokens.index("[SEP]")
    token_ids = content_token_ids(tokens)
    session, hidden = open_hidden_session(cache_dir, model_dir, precision, threads)
    n = len(token_ids)
    sequences = np.stack([np.full(n, sep_id), token_ids, np.full(n, cls_id)], axis=1).astype(np.int64)
    states = run_states(session, hidden, sequences)
    empty = run_states(session, hidden, np.array([[cls_id, sep_id]], np.int64))[0]
    return {"token_ids": token_ids, "states": states, "empty": empty, "vocab_size": len(tokens),
            "precision": precision, "pooling": "mean of last hidden states of [SEP] token [CLS]"}


def fit_pca(states: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, components [dim, hidden], explained variance ratio) of the token states. Each component's
    largest entry is made positive: SVD signs are arbitrary, and a rebuilt table must match the old one."""
    x = states.astype(np.float64)
    mean = x.mean(axis=0)
    _, singular, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = vt[:dim]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(axis=1)])
    explained = float((singular[:dim] ** 2).sum() / (singular ** 2).sum())
    return mean, components * signs[:, None], explained


def sif_weights(count: int, coefficient: float = SIF_COEFFICIENT) -> np.ndarray:
    """a / (a + p) for ranks 0..count-1, p a Zipf distribution (p ∝ 1 / (rank + 2), as model2vec does)."""
    inverse_rank = 1.0 / np.arange(2, count + 2)
    probability = inverse_rank / inverse_rank.sum()
    return coefficient / (coefficient + probability)


def build_table(distilled: dict, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """The static table float32 [vocab_size, dim] (zero rows for tokens that count for nothing), the
    unit `empty` vector, and the PCA's explained variance ratio, from distill_states' output."""
    mean, components, explained = fit_pca(distilled["states"], dim)
    projected = (distilled["states"].astype(np.float64) - mean) @ components.T
    projected *= sif_weights(len(projected))[:, None]
    table = np.zeros((distilled["vocab_size"], dim), np.float32)
    table[distilled["token_ids"]] = projected
    empty = (distilled["empty"].astype(np.float64) - mean) @ components.T
    return table, (empty / np.linalg.norm(empty)).astype(np.float32), explained


def check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 1 <= dim <= 384:
        raise BadInput(f"a static embedding's dim must be an integer from 1 to 384 (MiniLM's width), not {dim!r}",
                       hint=f"{DEFAULT_DIM} is the default; 384 keeps every PCA axis.")
    return int(dim)


def distill(model_dir: Path | str, out_path: Path | str, dim: int = DEFAULT_DIM, *,
            cache_dir: Path | str | None = None, precision: str = DISTILL_PRECISION, threads: int = 1,
            states: dict | None = None) -> dict:
    """Distil the static table for `dim` and write it to `out_path` atomically; returns its metadata.
    `cache_dir` holds the ONNX graph (default: out_path's folder); `threads` are onnxruntime's (~25 s on
    one core). `states` from distill_states skips the model run (then `precision` is the states')."""
    dim = check_dim(dim)
    model_dir, out_path = Path(model_dir), Path(out_path)
    started = time.perf_counter()
    if states is None:
        states = distill_states(model_dir, Path(cache_dir) if cache_dir else out_path.parent,
                                precision=precision, threads=threads)
    table, empty, explained = build_table(states, dim)
    metadata = {
        "recipe_version": RECIPE_VERSION, "dim": str(dim),
        "source_model": MINILM_NAME, "source_sha256": onnx_minilm.file_sha256(model_dir / onnx_minilm.WEIGHTS_FILE),
        "source_precision": states["precision"], "onnx_builder_version": onnx_minilm.BUILDER_VERSION,
        "pooling": states["pooling"], "pca": f"centred, {dim} of {states['states'].shape[1]} axes",
        "pca_explained_variance": f"{explained:.4f}", "sif_coefficient": repr(SIF_COEFFICIENT),
        "tokens": str(len(states["token_ids"])), "seconds": f"{time.perf_counter() - started:.1f}",
    }
    save_table(out_path, table, empty, metadata)
    log.info("distilled %s (%s tokens, %d-d) in %s s", out_path.name, metadata["tokens"], dim, metadata["seconds"])
    return metadata


# ---- the cached table --------------------------------------------------------------------------------

def _require_safetensors():
    try:
        import safetensors.numpy
    except ImportError:
        raise MissingExtra("safetensors", "embed") from None
    return safetensors.numpy


def save_table(path: Path, table: np.ndarray, empty: np.ndarray, metadata: dict) -> None:
    """Write a temp file, fsync, os.replace, then the size/sha256 manifest (onnx_minilm's _publish)."""
    st = _require_safetensors()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = onnx_minilm._temp_name(path)
    try:
        st.save_file({"vectors": table, "empty": empty}, str(tmp), metadata=metadata)
        onnx_minilm._publish(tmp, path, {"kind": "static embedding table", **metadata})
    finally:
        tmp.unlink(missing_ok=True)


def load_table(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(table, empty, metadata) of a saved table; raises ValueError if it is not one."""
    st = _require_safetensors()
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        metadata = dict(f.metadata() or {})
    tensors = st.load_file(str(path))
    table, empty = tensors["vectors"].astype(np.float32), tensors["empty"].astype(np.float32)
    if table.ndim != 2 or empty.shape != (table.shape[1],) or not np.isfinite(table).all():
        raise ValueError(f"{path.name} holds a table of shape {table.shape} and empty {empty.shape}")
    return table, empty, metadata


def table_path(cache_dir: Path, model_dir: Path, dim: int) -> Path:
    tag = onnx_minilm.file_sha256(model_dir / onnx_minilm.WEIGHTS_FILE)[:16]
    return (Path(cache_dir) / f"{STATIC_NAME}-{tag}-r{RECIPE_VERSION}-b{onnx_minilm.BUILDER_VERSION}"
            f"-{DISTILL_PRECISION}-d{dim}.safetensors")


def _matches(metadata: dict, model_dir: Path, dim: int) -> bool:
    return (metadata.get("recipe_version") == RECIPE_VERSION and metadata.get("dim") == str(dim)
            and metadata.get("source_sha256") == onnx_minilm.file_sha256(model_dir / onnx_minilm.WEIGHTS_FILE))


_distill_lock = threading.Lock()  # one distillation at a time in a process: each takes a core for ~30 s


def ensure_table(cache_dir: Path | str, dim: int = DEFAULT_DIM, model_dir: Path | str | None = None, *,
                 threads: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """The cached table for `dim` (table, empty, metadata), distilling it first when it is missing, fails
    its manifest, cannot be read or was made for another model, recipe or dim."""
    dim = check_dim(dim)
    model_dir = Path(model_dir) if model_dir else onnx_minilm.find_model_dir()
    cache_dir = Path(cache_dir)
    path = table_path(cache_dir, model_dir, dim)
    with _distill_lock:
        loaded = _load_valid(path, model_dir, dim)
        if loaded is not None:
            return loaded
        cache_dir.mkdir(parents=True, exist_ok=True)
        onnx_minilm._remove_stale_temp_files(cache_dir)
        distill(model_dir, path, dim, cache_dir=cache_dir, threads=threads)
        loaded = _load_valid(path, model_dir, dim)
        if loaded is None:
            raise onnx_minilm.ModelError(f"the static embedding table {path} was written but cannot be read back")
        return loaded


def _load_valid(path: Path, model_dir: Path, dim: int):
    if not onnx_minilm.is_valid(path):
        if path.exists():
            log.warning("static embedding table %s does not match its manifest; distilling it again", path.name)
        return None
    try:
        table, empty, metadata = load_table(path)
    except Exception as e:  # safetensors raises its own untyped errors on a damaged header
        log.warning("static embedding table %s cannot be read (%s); distilling it again", path.name, e)
        return None
    if not _matches(metadata, model_dir, dim) or table.shape[1] != dim:
        log.warning("static embedding table %s was made for another model or recipe; distilling it again", path.name)
        return None
    return table, empty, metadata


# ---- tokenising --------------------------------------------------------------------------------------

class WordPieceIds:
    """MiniLM's WordPiece ids of many texts, fast. The `tokenizers` library does ~1,400 abstracts/s on
    one core (~2,300 on both), slower than everything else here together. 99.6 % of arXiv abstracts are
    plain ASCII, and for those BERT's normaliser and pre-tokeniser reduce to: lowercase, split into runs
    of [a-z0-9] and single other characters. Each word's ids then come from a dict that the real
    tokenizer fills, a batch of new words at a time: ~7,000 abstracts/s on one core once the common
    words are known. Any other text (non-ASCII, control characters, literal special tokens) goes to
    the real tokenizer whole. tests/test_index_static.py checks that both give the same ids."""

    WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
    # BERT's normaliser deletes control characters (joining the words around them), and the tokenizer
    # matches special tokens in the raw text: both are the real tokenizer's job.
    CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
    SPECIAL = re.compile(r"\[(?:PAD|UNK|CLS|SEP|MASK)\]")
    memo_limit = 500_000  # words remembered; a million-paper import meets ~1M distinct ones

    def __init__(self, model_dir: Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingExtra("tokenizers", "embed") from None
        tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
        tokenizer.no_padding()  # the shipped file pads and truncates to 128
        tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer = tokenizer
        self.memo: dict[str, list[int]] = {}

    def plain_words(self, text: str) -> list[str] | None:
        """An ASCII text's words as BERT's pre-tokeniser splits them, or None when it needs the real tokenizer."""
        if not text.isascii() or self.CONTROL.search(text) or ("[" in text and self.SPECIAL.search(text)):
            return None
        return self.WORD.findall(text.lower())

    def learn(self, words: list[list[str]]) -> dict[str, list[int]]:
        """The memo, now holding every word given: the new ones go to the tokenizer in one batch (one call
        per word costs ~30 us, a batch a fraction of that)."""
        memo = self.memo
        seen = set().union(*words)
        new = seen.difference(memo)
        if len(memo) + len(new) > self.memo_limit:
            self.memo = memo = {}  # a new dict, not clear(): a concurrent call keeps reading the one it holds
            new = seen
        new = sorted(new)
        for word, encoding in zip(new, self.tokenizer.encode_batch(new, add_special_tokens=False)):
            memo[word] = encoding.ids
        return memo

    def __call__(self, texts: list[str]) -> list[list[int]]:
        texts = [t[:MAX_CHARS] for t in texts]
        words = [self.plain_words(t) for t in texts]
        memo = self.learn([w for w in words if w is not None])
        ids = [None if w is None else list(itertools.chain.from_iterable(map(memo.__getitem__, w)))[:MAX_TOKENS]
               for w in words]
        rest = [i for i, found in enumerate(ids) if found is None]
        if rest:
            encoded = self.tokenizer.encode_batch([texts[i] for i in rest], add_special_tokens=False)
            for i, encoding in zip(rest, encoded):
                ids[i] = encoding.ids
        return ids


def sum_rows(table: np.ndarray, ids: list[list[int]]) -> np.ndarray:
    """float32 [len(ids), dim]: each text's sum of its tokens' rows, one text at a time. Measured faster
    than one BLAS product of a chunk's token counts (OpenBLAS threads stall on a busy machine), and a
    text's vector then cannot depend on which texts share its batch, not even in the last bit."""
    out = np.zeros((len(ids), table.shape[1]), np.float32)
    for row, text_ids in enumerate(ids):
        if text_ids:
            np.add.reduce(table[text_ids], axis=0, out=out[row])
    return out


# ---- the embedder ------------------------------------------------------------------------------------

class StaticEmbedder:
    """The Embedder protocol over a static table distilled from all-MiniLM-L6-v2 (see the module doc).

    `cache_dir` is the models folder (<data_dir>/models), shared with MiniLMEmbedder's ONNX files.
    Nothing happens on construction; the first embed() (or load()) reads the cached table, distilling
    it first if needed with `threads` onnxruntime threads. A text's vector is a function of the text
    alone, bit for bit. `batch_size` is accepted for the protocol and changes nothing.
    """

    name = STATIC_NAME
    # Texts tokenised together: bounds the id lists held at once, and big enough that the real
    # tokenizer's batches (non-ASCII texts) still spread over its threads.
    chunk_size = 1024

    def __init__(self, cache_dir: Path | str, dim: int = DEFAULT_DIM, threads: int | None = None,
                 model_dir: Path | str | None = None):
        self.cache_dir = Path(cache_dir)
        self.dim = check_dim(dim)
        self.threads = threads or _usable_cores()
        self.model_dir = Path(model_dir) if model_dir else None
        self._version: str | None = None
        self._table: np.ndarray | None = None
        self._empty: np.ndarray | None = None
        self._metadata: dict = {}
        self._tokenize: WordPieceIds | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"StaticEmbedder(dim={self.dim}, cache_dir={str(self.cache_dir)!r})"

    @property
    def version(self) -> str:
        """Changes whenever the vectors would: dim, recipe, graph builder, distillation precision, weights.
        Hashes the weights file on first use (~0.4 s, remembered per process), so not in __init__."""
        if self._version is None:
            model_dir = self.model_dir or onnx_minilm.find_model_dir()
            sha = onnx_minilm.file_sha256(model_dir / onnx_minilm.WEIGHTS_FILE)
            self._version = (f"m2v-d{self.dim}-r{RECIPE_VERSION}-b{onnx_minilm.BUILDER_VERSION}"
                             f"-{DISTILL_PRECISION}-{sha[:12]}")
        return self._version

    @property
    def metadata(self) -> dict:
        """The loaded table's metadata (recipe, source sha, explained variance, distillation seconds)."""
        self.load()
        return dict(self._metadata)

    def load(self) -> None:
        """Read (or first distil) the table and set up the tokenizer now rather than on the first embed()."""
        with self._lock:
            if self._table is not None:
                return
            model_dir = self.model_dir or onnx_minilm.find_model_dir()
            table, empty, self._metadata = ensure_table(self.cache_dir, self.dim, model_dir, threads=self.threads)
            self._tokenize = WordPieceIds(model_dir)
            self._empty, self._table = empty, table

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        if not texts:
            return out
        self.load()
        for start in range(0, len(texts), self.chunk_size):
            chunk = texts[start:start + self.chunk_size]
            out[start:start + len(chunk)] = self._unit_rows(sum_rows(self._table, self._tokenize(chunk)))
        return out

    def _unit_rows(self, sums: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        unit = sums / np.maximum(norms, 1e-30)
        unit[norms[:, 0] == 0] = self._empty  # no usable token: see the module doc
        return unit.astype(np.float32, copy=False)
