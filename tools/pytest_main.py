"""Runs one pytest file as a Bazel py_test.

Bazel starts this with the test file's runfiles path as the first argument (see
//tools:pytest.bzl); the working directory is the workspace root inside the runfiles tree,
so `tests/conftest.py` and `tests/fixtures/` are found as under plain pytest.
"""

import os
import sys

import pytest


def main(argv):
  if len(argv) < 2:
    sys.exit("usage: pytest_main.py TEST_FILE [pytest args...]")
  test_file, extra = argv[1], argv[2:]
  root = os.getcwd()
  # Python put this script's real directory (the source tree's tools/) first on sys.path;
  # drop it, and make sure the runfiles root wins over anything in the venv (e.g. an
  # editable install of this repo) so Bazel tests the files it declared.
  here = os.path.dirname(os.path.realpath(__file__))
  sys.path[:] = [p for p in sys.path if p != here]
  if root in sys.path:
    sys.path.remove(root)
  sys.path.insert(0, root)
  args = [
      test_file,
      "--rootdir=" + root,
      # The runfiles tree belongs to Bazel: no .pytest_cache written into it.
      "-p", "no:cacheprovider",
      "-ra",
  ]
  tmp = os.environ.get("TEST_TMPDIR")
  if tmp:  # Keep tmp_path inside Bazel's per-test scratch dir (cleaned by Bazel).
    args.append("--basetemp=" + os.path.join(tmp, "pytest"))
  xml = os.environ.get("XML_OUTPUT_FILE")
  if xml:  # Per-test-case results in bazel-testlogs/.../test.xml.
    args.append("--junitxml=" + xml)
  only = os.environ.get("TESTBRIDGE_TEST_ONLY")
  if only:  # `bazel test --test_filter=EXPR` -> pytest -k EXPR.
    args += ["-k", only]
  return pytest.main(args + extra)


if __name__ == "__main__":
  sys.exit(main(sys.argv))
