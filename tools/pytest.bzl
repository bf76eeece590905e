"""pytest_test: one Bazel py_test that runs one plain pytest file."""

def pytest_test(name, src, deps = [], data = [], args = [], **kwargs):
    """A py_test running `src` under pytest via //tools:pytest_main.py.

    Args:
      name: target name.
      src: the pytest file (functions `test_*`, fixtures, parametrize all work).
      deps: py_library deps (the code under test).
      data: runtime files, e.g. conftest.py and fixtures.
      args: extra pytest arguments.
      **kwargs: passed to py_test (size, tags, timeout, ...).
    """
    native.py_test(
        name = name,
        srcs = [src, "//tools:pytest_main.py"],
        main = "//tools:pytest_main.py",
        args = ["$(rootpath %s)" % src] + args,
        deps = deps,
        data = data,
        python_version = "PY3",
        srcs_version = "PY3",
        **kwargs
    )
