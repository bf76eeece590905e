"""Both sides of a comparison: timing a run, and the transformers reference
model and its outputs."""

import os
import statistics
import time


def timed(fn, repeats: int):
  """(median seconds of `repeats` calls, the last call's result), after one
  warm-up call (JAX compiles there)."""
  result = fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times), result


def transformers_gguf(path: str):
  """The transformers model of a GGUF file, dequantised to float32, for
  inference."""
  import torch
  import transformers
  directory, file = os.path.split(path)
  return transformers.AutoModelForCausalLM.from_pretrained(
      directory, gguf_file=file, dtype=torch.float32).eval()


def tokens_before_eos(row, eos_ids) -> list[int]:
  """A generated row up to (not including) its first end-of-sequence id, as
  `generate.Completion.tokens` holds it."""
  tokens = []
  for token in row:
    if token in eos_ids:
      break
    tokens.append(int(token))
  return tokens
