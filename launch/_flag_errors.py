"""Flag and config-file mistakes as one `error:` line and exit code 2.

absl's own parser prints "FATAL Flags parsing error" and exits 1;
ml_collections raises a traceback for an override of a field the config
lacks or a config file that is not Python, and defers a missing file's
error to the first access. All of those are input mistakes, not bugs.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Sequence

from absl import flags


def _config_flag_names() -> list[str]:
  return [name for name, flag in flags.FLAGS._flags().items()
          if type(flag).__name__ == "_ConfigFlag"]


def _override_arg(argv: Sequence[str], field: str) -> str:
  """The --<config>.<path>=... argument whose path mentions `field`."""
  for arg in argv:
    path = arg.split("=", 1)[0].lstrip("-").split(".")[1:]
    if field in path:
      return arg
  return ""


def _config_error_line(error: BaseException, argv: Sequence[str]) -> str:
  """One line for an exception ml_collections raised while loading a config
  file or applying a --config.<field>= override."""
  text = str(error).strip()
  if isinstance(error, (AttributeError, KeyError)):
    # An override names a field the config lacks; ml_collections' text is
    # "'stepz'\nDid you mean \"steps\" instead of \"stepz\"?"
    field = re.match(r"[\\'\"]*([\w-]+)", text)
    hint = re.search(r'Did you mean \\?"([^"\\]+)', text)
    arg = _override_arg(argv, field.group(1)) if field else ""
    if arg:
      message = f"{arg.split('=', 1)[0]}: the config has no field "
      message += f"{field.group(1)!r}"
      if hint:
        message += f" (did you mean {hint.group(1)!r}?)"
      return message + "."
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  last = lines[-1] if lines else repr(error)
  for name in _config_flag_names():
    for arg in argv:
      if re.match(rf"--?{name}=", arg):
        path = arg.split("=", 1)[1].split(":", 1)[0]
        where = [frame.lineno for frame in traceback.extract_tb(
            error.__traceback__) if frame.filename == os.path.abspath(path)
                 or frame.filename == path]
        at = f" (line {where[-1]})" if where else ""
        return f"{arg}{at}: {type(error).__name__}: {last}"
  return f"{type(error).__name__}: {last}"


def fail(message: str) -> None:
  """The error line, then exit 2 at once. Every `finally` on the way here
  has run (outputs cleaned up, checkpoint saves awaited); the interpreter's
  own shutdown could only add noise (e.g. reads Orbax still has in flight
  for the other arrays of a damaged checkpoint)."""
  print(f"error: {message}", file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(2)  # pylint: disable=protected-access


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl's flag parsing (app.run's `flags_parser`) with every mistake as
  one `error:` line and exit 2."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:  # unknown flag, unparsable value: names the flag
    fail(str(e))
  except (AttributeError, KeyError, OSError, SyntaxError, TypeError,
          ValueError, NameError, ImportError) as e:
    fail(_config_error_line(e, argv))
  for name in _config_flag_names():
    flag = flags.FLAGS[name]
    try:
      flag.value.keys  # an unloadable file raises only when first touched
    except OSError as e:
      lines = [line.strip() for line in str(e).splitlines() if line.strip()]
      fail(f"--{name}={flag.config_filename}: cannot load the config "
            f"file: {lines[-1] if lines else e}")
  return rest
