"""Write a model bundle (:mod:`~rareid.deploy.model.bundle` reads it): the network's options
and the checkpoint's facts as JSON, its weights as safetensors, the ONNX model, a model card and
the SHA-256 of every file. Loading it unpickles nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rareid.deploy.model.arrays import file_sha256
from rareid.deploy.model.bundle import (
    BUNDLE_FORMAT,
    CARD_FILE,
    CONFIG_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    write_sums,
)
from rareid.deploy.model.export import export_metadata, export_onnx
from rareid.levels import level_to_rate

if TYPE_CHECKING:
    from rareid.deploy.model.inference import Preprocess
    from rareid.models.embedding import EmbeddingModel

#: The terms a model trained on a known dataset inherits (named in its card).
DATA_LICENCES = {
    "synthetic": "synthetic people rendered by rareid (MIT; no real person is shown)",
    "market1501": "Market-1501: research use only, under its authors' terms",
    "dukemtmc": "DukeMTMC-reID: withdrawn by its authors; check before any use",
    "msmt17": "MSMT17: research use only, under its authors' terms (signed agreement)",
    "cuhk03": "CUHK03: research use only, under its authors' terms",
}


def bundle_config(
    model: EmbeddingModel,
    preprocess: Preprocess,
    checkpoint: dict[str, Any],
    checkpoint_sha256: str,
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``config.json``: what rebuilds the network and serves it, and where it came from."""
    from rareid.models.embedding import EMBEDDING_OPTIONS

    hparams = checkpoint.get("hyper_parameters") or {}
    data = checkpoint.get("datamodule_hyper_parameters") or {}
    options = {key: hparams[key] for key in EMBEDDING_OPTIONS if key in hparams}
    options.update(pretrained=False, weights_path=None)
    level_policy = str(data.get("level_policy") or "nearest")
    rates = [float(r) for r in model.rates]
    return {
        "format": BUNDLE_FORMAT,
        "model_options": json.loads(json.dumps(options, default=list)),
        "backbone": str(model.hparams.backbone),
        "img_size": list(preprocess.img_size),
        "mean": list(preprocess.mean),
        "std": list(preprocess.std),
        "rates": rates,
        "levels": {str(level): level_to_rate(level, rates) for level in range(1, len(rates) + 1)},
        "split_sizes": [int(s) for s in model.distance_split_sizes],
        "distance": str(model.hparams.distance),
        "level_policy": level_policy,
        "training_data": {
            "dataset": str(data.get("dataset") or "unknown"),
            "identities": int(hparams.get("num_classes") or 0),
        },
        "calibration": calibration,
        "checkpoint_sha256": checkpoint_sha256,
        "onnx_metadata": export_metadata(model, preprocess, checkpoint_sha256, level_policy),
    }


def model_card(config: dict[str, Any], levels_table: list[str] | None) -> str:
    """``README.md``: what the model is, how well it ranks per level, its thresholds and the
    terms of its training data."""
    dataset = config["training_data"]["dataset"]
    licence = DATA_LICENCES.get(dataset, "unknown: check the training data's terms before use")
    rates = ", ".join(f"level {k}: rate {r:g}" for k, r in config["levels"].items())
    lines = [
        f"# rareid model: {config['backbone']}",
        "",
        "Cross-resolution person re-identification (resolution-adaptive masks, varying-length "
        "embedding): a low-resolution query is embedded at the level its size supports and "
        "compared on that level's prefix of the embedding.",
        "",
        f"- input {config['img_size'][0]}x{config['img_size'][1]} px, mean {config['mean']}, "
        f"std {config['std']}",
        f"- {rates}; sub-vectors {config['split_sizes']}; {config['distance']} distance",
        f"- trained on `{dataset}` ({config['training_data']['identities']} identities)",
        f"- training data licence: {licence}",
        f"- checkpoint SHA-256 {config['checkpoint_sha256']}",
        "",
        "## Per-level ranking on held-out labelled crops",
        "",
        "Every crop a query at each level, degraded to its rate, against the HR crops of all "
        "of them (same-camera matches of the same person left out).",
        "",
        *(levels_table or ["not measured: export with `--heldout LABELS.csv` to add it"]),
        "",
        "## Thresholds",
        "",
    ]
    calibration = config.get("calibration")
    if calibration and calibration.get("levels"):
        lines += ["| level | FAR | threshold |", "|---|---|---|"]
        for level, entry in sorted(calibration["levels"].items()):
            for far, value in sorted((entry.get("thresholds") or {}).items()):
                lines.append(f"| {level} | {far} | {value} |")
    else:
        lines.append("none: calibrate with `rareid calibrate` on your own labelled crops")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "rareid index --backend onnx --onnx BUNDLE/ --gallery gallery/ --out gallery.npz",
        "rareid search --index gallery.npz --query queries/ --backend onnx --onnx BUNDLE/",
        "```",
        "",
        "Check the files with `sha256sum -c SHA256SUMS`.",
        "",
    ]
    return "\n".join(lines)


def write_bundle(
    model: EmbeddingModel,
    preprocess: Preprocess,
    checkpoint_path: str | Path,
    out: str | Path,
    calibration: dict[str, Any] | None = None,
    levels_table: list[str] | None = None,
) -> dict[str, Any]:
    """Write the bundle folder ``out`` (staged beside it, then renamed: never half a bundle);
    returns its configuration."""
    from safetensors.torch import save_file

    from rareid.deploy.model.inference import read_checkpoint
    from rareid.runs import TEMP_PREFIX

    out = Path(out)
    staged = out.parent / f"{TEMP_PREFIX}{out.name}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    try:
        digest = file_sha256(checkpoint_path)
        config = bundle_config(
            model, preprocess, read_checkpoint(checkpoint_path), digest, calibration
        )
        state = {key: value.contiguous() for key, value in model.state_dict().items()}
        save_file(state, str(staged / WEIGHTS_FILE))
        export_onnx(model, staged / ONNX_FILE, config["onnx_metadata"])
        (staged / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (staged / CARD_FILE).write_text(model_card(config, levels_table))
        write_sums(staged, [CONFIG_FILE, WEIGHTS_FILE, ONNX_FILE, CARD_FILE])
        if out.exists():
            shutil.rmtree(out)
        staged.rename(out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return config
