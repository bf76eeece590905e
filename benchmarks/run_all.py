r"""Runs every benchmark and writes their tables to benchmarks/RESULTS.md.

  make bench        (or: python -m benchmarks.run_all [--output=PATH])

Each benchmark runs in its own process (clean memory, its own JAX runtime)
and prints a markdown table with ratios against a reference measured in the
same run; this script collects the tables.
"""

import datetime
import os
import subprocess
import sys

from absl import app
from absl import flags

_OUTPUT = flags.DEFINE_string(
    "output", os.path.join(os.path.dirname(__file__), "RESULTS.md"),
    "Markdown file to write.")

BENCHMARKS = ("forward_speed", "train_speed", "optimizer_costs",
              "convert_memory")


def main(argv):
  del argv
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sections = []
  for name in BENCHMARKS:
    print(f"running benchmarks.{name} ...", flush=True)
    result = subprocess.run([sys.executable, "-m", f"benchmarks.{name}"],
                            cwd=root, capture_output=True, text=True)
    if result.returncode:
      sys.exit(f"benchmarks.{name} failed:\n{result.stderr[-3000:]}")
    table = result.stdout[result.stdout.index("## "):]
    print(table)
    sections.append(table.strip())
  header = (f"# Benchmark results\n\nWritten by `make bench` "
            f"(benchmarks/run_all.py) on "
            f"{datetime.date.today().isoformat()}. Each table compares "
            "against a reference measured in the same run.\n")
  with open(_OUTPUT.value, "w") as f:
    f.write(header + "\n" + "\n\n".join(sections) + "\n")
  print(f"wrote {_OUTPUT.value}")


if __name__ == "__main__":
  app.run(main)
