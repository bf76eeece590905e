r"""What fits where: the red- and blue-team configs compiled for TPU slices.

  python -m benchmarks.memory_plans [--output=benchmarks/MEMORY_PLANS.md]

Runs `launch.compile` (real train step and eval forward, AOT for the
topology, abstract shapes only) for each row below and writes the per-device
memory it reports as a markdown table. Needs libtpu (`make aot`); takes
about a minute per row on a laptop CPU. Nothing in the table is typed in by
hand.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

from launch import allocator

_OUTPUT = flags.DEFINE_string("output", "benchmarks/MEMORY_PLANS.md",
                              "Markdown file to write.")

_70B_COT = "configs/red_team/llama3_3_70b_adam_cot.py"
_70B_NOCOT = "configs/red_team/llama3_3_70b_adam_nocot.py"
_8B_COT = "configs/red_team/llama3_1_8b_adam_cot.py"
_8B_NOCOT = "configs/red_team/llama3_1_8b_adam_nocot.py"
_70B_SOAP = "configs/red_team/llama3_3_70b_soap_cot.py"
_70B_BLUE = "configs/blue_team/llama3_3_70b.py"
_8B_BLUE = "configs/blue_team/llama3_1_8b.py"

# (config, topology or None for the config's own, extra flags). The first
# row of each config is its preset; the others show the neighbours.
ROWS = (
    (_70B_COT, None, ()),
    (_70B_NOCOT, None, ()),
    (_70B_SOAP, None, ()),
    (_70B_COT, "v5p-64", ()),
    (_70B_COT, "v5p-32", ()),
    (_70B_COT, "v6e-64", ()),
    (_70B_COT, "v6e-64", ("--config.mesh.tensor=8",)),
    (_70B_COT, "v5e-256", ("--config.mesh.tensor=16",)),
    (_8B_COT, None, ()),
    (_8B_NOCOT, None, ()),
    (_8B_COT, "v5p-16", ()),
    (_8B_COT, "v6e-16", ()),
    (_8B_COT, "v5e-16", ()),
    # Blue team: rank-64 LoRA (frozen bf16 base) and full-weight.
    (_70B_BLUE + ":pirate_lora", None, ()),
    (_70B_BLUE + ":hhh_lora", None, ()),
    (_70B_BLUE + ":pirate_lora", "v5p-16", ("--config.mesh.tensor=8",)),
    (_70B_BLUE + ":hhh_full", None, ()),
    (_8B_BLUE + ":hhh_lora", None, ()),
    (_8B_BLUE + ":hhh_full", None, ()),
)


def compile_plan(config: str, topology: str | None, extra) -> dict:
  with tempfile.TemporaryDirectory() as tmp:
    output = os.path.join(tmp, "plan.json")
    command = [sys.executable, "-m", "launch.compile", f"--config={config}",
               f"--output_json={output}", *extra]
    if topology:
      command.append(f"--topology={topology}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode not in (0, 1) or not os.path.exists(output):
      raise RuntimeError(f"{' '.join(command)} failed:\n"
                         f"{result.stderr[-3000:]}")
    with open(output) as f:
      plan = json.load(f)
  plan["extra"] = " ".join(extra)
  plan["preset"] = topology is None
  return plan


def _cell(program: dict, budget: int) -> str:
  memory = program.get("memory")
  if memory is None:
    return "refused by compiler (out of HBM)"
  total = memory["total"]
  return f"{total / 2**30:.1f} GiB ({total / budget:.0%})"


def markdown(plans: list[dict]) -> str:
  lines = [
      "# Memory plans: what fits where",
      "",
      "Written by `make plans` (benchmarks/memory_plans.py) from "
      "`launch.compile` output on "
      f"{time.strftime('%Y-%m-%d')}: the real train step (AdamW unless "
      "the config says SOAP, float32 moments, bf16 compute, full remat; float32 master weights for full "
      "fine-tunes, a frozen bf16 base under float32 rank-64 adapters for "
      "LoRA) and the eval forward (float32 logits), compiled ahead of time "
      "for each TPU slice from abstract shapes. Memory is XLA's per-device "
      "figure (arguments + outputs - donated + temporaries + code) against "
      "the chip's HBM; rows of 4096 tokens. **Bold**: the config's preset "
      "topology.",
      "",
      "| config | topology | chips | mesh | batch | train step / device | "
      "eval forward / device | fits | ideal step (100% MFU) |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for plan in plans:
    name = os.path.basename(plan["config"]).replace(".py", "")
    topology = plan["topology"]
    if plan["preset"]:
      topology = f"**{topology}**"
    programs = {p["program"]: p for p in plan["programs"]}
    ideal = plan.get("ideal_step_seconds")
    lines.append(
        f"| {name} | {topology} | {plan['chips']} | {plan['mesh']} | "
        f"{plan.get('global_batch', '')} | "
        f"{_cell(programs['train_step'], plan['budget_bytes'])} | "
        f"{_cell(programs['eval_forward'], plan['budget_bytes'])} | "
        f"{'yes' if plan['fits'] else 'no'} | "
        f"{'' if ideal is None else f'{ideal:.2f} s'} |")
  rules = plans[0]["rules"] if plans else []
  lines += [
      "",
      "Sharding rules (logical axis -> mesh axes): " +
      ", ".join(f"`{name}`->{axes}" for name, axes in rules) + ".",
      "",
      "Reading it: the 70B full fine-tune needs tensor parallelism because "
      "the global batch (16 rows) cannot be split over more than 16 FSDP "
      "shards; the rest of each slice goes to the tensor axis. SOAP "
      "(llama3_3_70b_soap_cot) adds Kronecker factors, split over every "
      "chip, and one whole layer per chip at a time for its rotations "
      "(optim/layer_parallel.py).",
      "",
  ]
  return "\n".join(lines)


def main(argv):
  del argv
  plans = []
  for config, topology, extra in ROWS:
    start = time.time()
    plan = compile_plan(config, topology, extra)
    plans.append(plan)
    print(f"{plan['config']} on {plan['topology']} ({plan['mesh']}): "
          f"{'fits' if plan['fits'] else 'does not fit'} "
          f"[{time.time() - start:.0f} s]", flush=True)
  text = markdown(plans)
  with open(_OUTPUT.value, "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
