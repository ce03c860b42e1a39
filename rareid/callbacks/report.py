"""After ``rareid test``: the results table, a rank-list picture and a t-SNE, in the run folder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from rareid.evaluation.masks import write_mask_pictures
from rareid.evaluation.report import format_results_table, results_to_json
from rareid.evaluation.viz import (
    draw_rank_list,
    log_images_to_loggers,
    plot_tsne,
    rank_lists,
    tsne_inputs,
)

log = logging.getLogger(__name__)


class EvaluationReport(Callback):
    """Print and save the MLR results of a test run, with pictures.

    Args:
        output_dir: folder for ``results.md``, ``results.json``, ``rank_list.png``,
            ``tsne.png`` and the mask pictures (the CLI links it to
            ``<default_root_dir>/results``).
        rank_list_queries: queries shown in the rank list (one per level first).
        topk: gallery images per query in the rank list.
        tsne: draw the t-SNE picture (paper Fig. 5); it takes a few seconds.
        overwrite: replace an earlier ``results.json`` in ``output_dir`` (perhaps another
            checkpoint's); without it ``test`` refuses before embedding any image.
    """

    def __init__(
        self,
        output_dir: str = "results",
        rank_list_queries: int = 8,
        topk: int = 10,
        tsne: bool = True,
        overwrite: bool = False,
    ) -> None:
        if rank_list_queries < 1 or topk < 1:
            raise ValueError(
                f"report.rank_list_queries and report.topk: expected at least 1, got "
                f"{rank_list_queries} and {topk}"
            )
        self.overwrite = overwrite
        self.output_dir = output_dir
        self.rank_list_queries = rank_list_queries
        self.topk = topk
        self.tsne = tsne
        self.paths: dict[str, Path] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        target = Path(self.output_dir) / "results.json"
        if stage == "test" and target.exists() and not self.overwrite:
            raise FileExistsError(
                f"{target} holds the results of an earlier test; pass --report.overwrite true "
                "to replace them, or choose another --trainer.default_root_dir"
            )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if getattr(pl_module, "test_run_by_callback", False):
            return  # a protocol run whole by its callback (mlr-video) wrote its own report
        metric = pl_module.test_metric
        # Every rank takes part in the gather; only rank zero writes.
        with metric.sync_context(should_sync=trainer.world_size > 1):
            lists = rank_lists(metric, trial=0, topk=self.topk)
            tsne_data = tsne_inputs(metric) if self.tsne else None
        self._write(trainer, pl_module, lists, tsne_data)

    @rank_zero_only
    def _write(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        rank_lists: dict[str, Any],
        tsne_data: Any,
    ) -> None:
        out = Path(self.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        results = pl_module.test_results
        table = format_results_table(results, pl_module.rates, style="terminal")
        (out / "results.md").write_text(
            format_results_table(results, pl_module.rates, style="markdown") + "\n"
        )
        counts = pl_module.test_metric.query_counts
        # The checkpoint's path makes each split's results traceable in ``rareid aggregate``.
        checkpoint = str(trainer.ckpt_path) if trainer.ckpt_path else None
        (out / "results.json").write_text(
            results_to_json(results, query_counts=counts, checkpoint=checkpoint)
        )
        print(
            "\nMLR evaluation (mean ± std over trials, %; skipped: queries without a valid match "
            "in their trial's gallery, not scored, over all trials)\n" + table
        )
        self.paths = {"results": out / "results.md"}

        datamodule = trainer.datamodule
        # e.g. trainer.limit_test_batches stopped before the first query: nothing to picture
        scored = len(rank_lists.get("query_index", ())) > 0
        if not scored:
            log.warning("no rank-list or t-SNE picture: no query was scored")
        if datamodule is None or not hasattr(datamodule, "load_eval_image"):
            log.warning("no rank-list picture: the datamodule cannot load evaluation images")
        else:
            if scored:
                self.paths["rank_list"] = self._rank_list(datamodule, rank_lists, out)
            self.paths.update(write_mask_pictures(pl_module, datamodule.eval_dataset("test"), out))
        if tsne_data is not None and scored:
            embeddings, pids, levels = tsne_data
            self.paths["tsne"] = plot_tsne(embeddings, pids, levels, out / "tsne.png")
        log_images_to_loggers(
            trainer.loggers, {k: v for k, v in self.paths.items() if v.suffix == ".png"}
        )
        for name, path in self.paths.items():
            print(f"{name}: {path}")

    def _rank_list(self, datamodule: Any, rank_lists: dict[str, Any], out: Path) -> Path:
        query_index = rank_lists["query_index"].tolist()
        levels = rank_lists["query_level"].tolist()
        # Spread the picked queries over the levels, lowest resolution first.
        order = sorted(range(len(query_index)), key=lambda i: (levels[i], i))
        by_level: dict[int, list[int]] = {}
        for i in order:
            by_level.setdefault(levels[i], []).append(i)
        picked: list[int] = []
        while len(picked) < min(self.rank_list_queries, len(order)):
            for rows in by_level.values():
                if rows and len(picked) < self.rank_list_queries:
                    picked.append(rows.pop(0))
        queries, galleries = [], []
        for row in picked:
            info = datamodule.eval_sample_info("test", query_index[row])
            queries.append(
                {
                    "image": datamodule.load_eval_image("test", query_index[row]),
                    "level": int(info["level"]),
                    "rate": float(info["rate"]),
                    "pid": int(info["pid"]),
                }
            )
            gallery_row = []
            for g_index, match in zip(
                rank_lists["gallery_index"][row].tolist(),
                rank_lists["matches"][row].tolist(),
                strict=True,
            ):
                g_info = datamodule.eval_sample_info("test", g_index)
                gallery_row.append(
                    {
                        "image": datamodule.load_eval_image("test", g_index),
                        "pid": int(g_info["pid"]),
                        "match": bool(match),
                    }
                )
            galleries.append(gallery_row)
        return draw_rank_list(queries, galleries, out / "rank_list.png")
