"""``rareid test`` with ``data.protocol: mlr-video``: the Lightning callback that runs the
video protocol of :mod:`rareid.tracks.protocol` on the tested model.

The only Lightning piece of :mod:`rareid.tracks`; the Lightning CLI adds it to every run, and
it does nothing unless the DataModule's protocol is ``mlr-video``. The DataModule then gives
the test loop one batch without images (:mod:`rareid.data.video_protocol`); at the end of the
test epoch this callback reads the video dataset, runs every schedule and pooling against
single-frame matching (``data.trials`` trials, ``data.seed``), logs ``test/<schedule>/
<method>/rank1|mAP`` and writes the per-schedule table (that of ``rareid tracks evaluate``) to
the report folder as ``results.md`` and ``results.json``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_only

from rareid.callbacks.report import EvaluationReport
from rareid.data.video_protocol import SYNTHETIC_VIDEO, SYNTHETIC_VIDEO_OPTIONS, VIDEO_OPTIONS
from rareid.deploy import Preprocess
from rareid.tracks.match import DEFAULT_MIN_FRAMES
from rareid.tracks.pooling import POOLINGS
from rareid.tracks.protocol import (
    SCHEDULES,
    SINGLE_FRAME,
    VideoSet,
    evaluate_mlr_video,
    markdown_table,
    summarize,
    synthetic_video_set,
    video_set,
)

log = logging.getLogger(__name__)


def video_test_set(datamodule: Any) -> tuple[VideoSet, str]:
    """The query and gallery tracklets of the DataModule's video dataset, and what they are."""
    from rareid.data.readers.video import read_video_dataset
    from rareid.data.video_protocol import video_dataset_key

    hparams = datamodule.hparams
    key = video_dataset_key(hparams.dataset)
    options = dict(hparams.dataset_options or {})
    if key == SYNTHETIC_VIDEO:
        chosen = {**SYNTHETIC_VIDEO_OPTIONS, **options}
        return synthetic_video_set(**chosen), f"{SYNTHETIC_VIDEO} {chosen}"
    max_frames = int(options.pop("max_frames", VIDEO_OPTIONS["max_frames"]))
    splits = read_video_dataset(key, hparams.root, **options)
    data = video_set(splits, max_frames)
    if not data.queries or not data.gallery:
        raise ValueError(f"data.root: {key} under {hparams.root!r} has no query or no gallery")
    return data, splits.summary()


class MLRVideoTest(Callback):
    """Run the ``mlr-video`` protocol at the end of a test epoch whose DataModule asks for it."""

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        datamodule = trainer.datamodule
        hparams = getattr(datamodule, "hparams", {})
        if hparams.get("protocol") != "mlr-video":
            return
        data, description = video_test_set(datamodule)
        preprocess = Preprocess(tuple(datamodule.input_size), hparams.mean, hparams.std)
        with torch.inference_mode():
            results = evaluate_mlr_video(
                pl_module,
                preprocess,
                data,
                SCHEDULES,
                POOLINGS,
                datamodule.trials,
                datamodule.seed,
                DEFAULT_MIN_FRAMES,
                hparams.level_policy,
            )
        summary = summarize(results)
        for schedule, table in summary.items():
            for method, scores in table.items():
                for score in ("rank1", "mAP"):
                    name = f"test/{schedule}/{method}/{score}"
                    pl_module.log(name, scores[f"{score}_mean"] / 100, rank_zero_only=True)
        pl_module.test_results = summary
        self._write(trainer, results, summary, description, len(data.queries), len(data.gallery))

    @rank_zero_only
    def _write(
        self,
        trainer: L.Trainer,
        results: dict,
        summary: dict,
        description: str,
        queries: int,
        gallery: int,
    ) -> None:
        lines = markdown_table(summary, (*POOLINGS, SINGLE_FRAME))
        report = next((c for c in trainer.callbacks if isinstance(c, EvaluationReport)), None)
        print(
            f"\nmlr-video ({description}; {queries} query and {gallery} gallery tracklets; "
            f"mean ± std over trials, %)\n" + "\n".join(lines)
        )
        if report is None:
            return
        out = Path(report.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("\n".join(lines) + "\n")
        checkpoint = str(trainer.ckpt_path) if trainer.ckpt_path else None
        document = {
            "protocol": "mlr-video",
            "checkpoint": checkpoint,
            "data": description,
            "summary": summary,
            "per_trial": results,
        }
        (out / "results.json").write_text(json.dumps(document, indent=1))
        print(f"results: {out / 'results.md'}")
