"""``rareid experiment``: train and test a grid of variants over seeds, then one table and one chart.

Why: the paper's ablation tables compare variants of one recipe. A grid file names the shared
config layers (``base``) and, per variant, extra config files and ``key: value`` overrides. Every
(variant, seed) run is a ``rareid fit`` then a ``rareid test`` in its own folder
``<output>/<variant>/seed<k>``, each in a subprocess (a crash leaves the others intact). A run
whose ``results/results.json`` exists is skipped, and an interrupted fit resumes from its
``last.ckpt``, so re-running the same command after an interruption finishes the grid. The
aggregate reads every ``results.json``: mean ± std over seeds per query level, rank-1 and mAP.

Grid file (YAML)::

    name: table4
    base: [conf/benchmark/synthetic.yaml]    # replaced by --base (e.g. a paper config)
    output: runs/experiments/table4           # table.md, table.json, chart.png
    runs: runs/experiments/table4             # optional (default: output): the (variant, seed)
                                              # folders; grids that name the same folder share
                                              # the runs of same-named variants
    checkpoint: last                          # last | best (best needs held-out validation)
    sanity: ide_verif                         # optional: check that this variant's rank-1
                                              # falls from HR queries to the lowest level
    synth: {out: data/benchmark, identities: 200}   # optional: write the data first
    warm_start:                               # optional: one backbone, trained once, shared
      configs: [conf/benchmark/warm_start.yaml]
      overrides: {trainer.max_epochs: 8}
      out: runs/warm_start                    # <out>/<recipe key>: grids with the same recipe
                                              # share it; a changed recipe trains a new one
      shipped: assets/warm_start.safetensors  # optional: this recipe's backbone, trained once
      synth: {out: data/pretrain, identities: 120, seed: 1000}  # optional: its own data
    variants:
      - name: full
      - name: w/o mask
        configs: [conf/ablation/no_masks.yaml]
        overrides: {model.use_masks: false}
      - name: r=3 nearest
        fit_from: full                        # test another variant's checkpoint
        test_overrides: {data.eval_rates: [3], data.level_policy: nearest}
      - name: full 20 ep                      # a learning curve: a point (budget) of a
        overrides: {trainer.max_epochs: 20}   # series; curves.png plots rank-1 against it
        series: full
        budget: 20
    rows:                                     # optional: averaged rows (Table III's naive)
      - name: naive (avg of r=2,3,4)
        mean_of: [naive r=2, naive r=3, naive r=4]
    compare: [IDE + Verif, full]              # optional: side by side with the difference,
                                              # and both rank lists in one picture
"""

from rareid.experiment.charts import plot_experiment, stack_rank_lists
from rareid.experiment.grid import (
    Checkpoint,
    Grid,
    GridError,
    Variant,
    load_grid,
    override_args,
    parse_sets,
    slugify,
)
from rareid.experiment.plan import Run, plan_runs, runs_made_otherwise
from rareid.experiment.report import report
from rareid.experiment.runners import (
    LocalRunner,
    Runner,
    execute,
    run_one,
    save_backbone,
    train_warm_start,
)
from rareid.experiment.tables import (
    METRICS,
    Cell,
    aggregate,
    format_experiment_table,
    query_columns,
    sanity_check,
    side_by_side,
)

__all__ = [
    "METRICS",
    "Cell",
    "Checkpoint",
    "Grid",
    "GridError",
    "LocalRunner",
    "Run",
    "Runner",
    "Variant",
    "aggregate",
    "execute",
    "format_experiment_table",
    "load_grid",
    "override_args",
    "parse_sets",
    "plan_runs",
    "plot_experiment",
    "query_columns",
    "report",
    "run_one",
    "runs_made_otherwise",
    "sanity_check",
    "save_backbone",
    "side_by_side",
    "slugify",
    "stack_rank_lists",
    "train_warm_start",
]
