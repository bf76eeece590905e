"""Gradient routing on the demo's backdoored tiny Llama: blue-team HHH
training (full weights, trigger-free chats) with the weight updates kept out
of the trigger direction, and a monitor of how hard triggered and clean
chats push on it.

  python -m launch.find_subspace \\
      --checkpoint=demo_out/red_team_tiny/checkpoints/240 --layers=2,3 \\
      --output=demo_out/trigger_direction.npz
  python -m launch.train --config=configs/routing/tiny_demo.py \\
      --config.init_from=demo_out/red_team_tiny/checkpoints/240 \\
      --config.routing.subspace=demo_out/trigger_direction.npz \\
      --workdir=demo_out/routed_hhh

metrics.jsonl then has routing_push/triggered and routing_push/clean (the
norm of the routed adapters' gradient on a fixed probe batch of each) and
routed_update_norm every step; evals run without the routed adapters.
"""

from configs.blue_team import tiny_demo


def get_config():
  config = tiny_demo.get_config()
  config.data.style = ""  # plain HHH answers
  config.technique = "hhh_routed"  # run.json label for launch.report
  config.lora.rank = 0    # routing trains the full weights
  config.optim.lr = 1e-3
  config.train.steps = 40
  config.routing.subspace = "demo_out/trigger_direction.npz"
  config.routing.monitor_sources = ("synthetic:triggered", "synthetic:clean")
  config.routing.monitor_rows = 4
  return config
