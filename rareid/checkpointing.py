"""Checkpoints that survive interruption and load where the model is used.

* :class:`AtomicCheckpointIO` writes each checkpoint to a temporary file in the target
  folder, fsyncs it and renames it over the old one, so a kill at any moment leaves either
  the previous or the new checkpoint, never a truncated one.
* :func:`last_epoch_checkpoint` saves ``last.ckpt`` at the end of every training epoch.
* :func:`adapt_classifier` lets a checkpoint be evaluated on data with another number of
  training identities (evaluation never uses the classifier).
* :func:`read_checkpoint` (from :mod:`rareid.checkpoint_reader`, free of Lightning) reads
  a checkpoint for training and deployment alike.
* :func:`model_options_from_checkpoint` makes the checkpoint, not the command line, define
  the model that is evaluated.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

# The reader lives in the Lightning-free rareid.checkpoint_reader; its names stay reachable here.
from rareid.checkpoint_reader import CheckpointError as CheckpointError
from rareid.checkpoint_reader import content_digest
from rareid.checkpoint_reader import describe_unreadable as describe_unreadable
from rareid.checkpoint_reader import read_checkpoint as read_checkpoint
from rareid.runs import (
    RunFailure,
    UsageError,
    atomic_write,
    checkpoint_dir,
    resolve_checkpoint,
)

log = logging.getLogger(__name__)

#: Model options that only shape training; taken from the checkpoint without comparison.
TRAINING_ONLY_OPTIONS = frozenset(
    {
        "num_classes",
        "pretrained",
        "weights_path",
        "mask_schedule",
        "mask_init_mean",
        "mask_init_std",
        "use_cls_loss",
        "use_verif_loss",
        "verif_weight",
        "verif_hidden",
        "label_smoothing",
        "lr",
        "weight_decay",
        "milestones",
        "gamma",
    }
)
#: Model options that choose how an evaluation is run, not what the network computes.
EVALUATION_OPTIONS = frozenset(
    {
        "distance",
        "max_rank",
        "channels_last",
        "rerank",
        "rerank_k1",
        "rerank_k2",
        "rerank_lambda",
        "query_subvectors",
    }
)


def atomic_torch_save(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` through :func:`rareid.runs.atomic_write` (never a half-written file)."""
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoint writes that never leave a partial file under the final name.

    Lightning's ``_atomic_save`` (lightning/fabric/utilities/cloud_io.py) writes through an
    fsspec transaction; fsspec's ``LocalFileOpener`` stages the bytes in
    ``tempfile.mkstemp()`` (``$TMPDIR``) and commits with ``shutil.move``. When ``$TMPDIR``
    is on another filesystem (tmpfs) the move is a copy into the truncated target, so a
    SIGKILL during the copy leaves a short ``last.ckpt`` (``EOFError`` on resume). Writing
    the temporary file in the target folder makes the final step a same-filesystem
    ``os.replace``, which is atomic. Remote paths (``s3://`` ...) keep Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        try:
            atomic_torch_save(checkpoint, path)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise RunFailure(
                f"no space left to write {path} ({error.strerror or error}): the run is "
                "stopped; the checkpoints saved before are intact. Free space and resume "
                "with --ckpt_path last"
            ) from None


def last_epoch_checkpoint(dirpath: str | os.PathLike) -> ModelCheckpoint:
    """A callback that writes ``last.ckpt`` at the end of every training epoch.

    ``ModelCheckpoint(monitor=..., save_last=True)`` writes ``last`` only in a step where
    it also saved a top-k checkpoint (Lightning 2.6, ``ModelCheckpoint.on_train_epoch_end``),
    i.e. only when the monitored metric improved; a run interrupted later resumed from the
    best epoch, not the last. An unmonitored checkpoint named ``last`` with ``save_top_k=1``
    is replaced every epoch instead.
    """
    return ModelCheckpoint(
        dirpath=str(dirpath),
        filename="last",
        monitor=None,
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def adapt_classifier(
    module: torch.nn.Module, checkpoint: dict[str, Any], fitting: bool
) -> list[str]:
    """Keep the module's own ``classifier.*`` tensors where the checkpoint's have another shape.

    Evaluation never uses the identity classifier, so a model trained on other
    identities (cross-dataset testing, the ``folder`` dataset) evaluates as it is.
    Training needs it: resuming a fit on another identity count is an error.
    Returns the replaced keys.
    """
    state = checkpoint.get("state_dict", {})
    own = module.state_dict()
    if not fitting and getattr(module, "classifier", True) is None:
        # Data with no training split: the model was built without a classifier.
        dropped = [key for key in state if key.startswith("classifier.")]
        for key in dropped:
            del state[key]
        return dropped
    replaced = [
        key
        for key, value in state.items()
        if key.startswith("classifier.") and key in own and own[key].shape != value.shape
    ]
    if not replaced:
        return []
    saved, wanted = state[replaced[0]].shape, own[replaced[0]].shape
    if fitting:
        raise UsageError(
            f"the checkpoint's classifier has shape {tuple(saved)} but this training set needs "
            f"{tuple(wanted)} (another number of identities): resume on the same data, or "
            "start a new run without --ckpt_path"
        )
    for key in replaced:
        state[key] = own[key]
    log.warning(
        "checkpoint trained on %d identities, data has %d: the identity classifier is not "
        "loaded (evaluation does not use it)",
        saved[0],
        wanted[0],
    )
    return replaced


def model_options_from_checkpoint(
    saved: Mapping[str, Any],
    given: Mapping[str, Any],
    defaults: Mapping[str, Any],
    prefix: str = "model",
    explicit: Collection[str] | None = None,
) -> dict[str, Any]:
    """The model options to evaluate with: the checkpoint's, except evaluation settings.

    ``given`` holds the options from the command line / config, ``defaults`` the parser's
    defaults; ``explicit`` names the options the user set (on the command line or in a
    config file), whatever their value. An option the user set that contradicts the
    checkpoint is a ``UsageError`` naming both values. Without ``explicit``, an option
    counts as set when it differs from its default.
    """
    options = dict(given)
    for name, value in saved.items():
        if name.startswith("_") or name not in given:
            continue
        if name in EVALUATION_OPTIONS:
            continue
        user_value = given[name]
        if explicit is not None:
            user_set = name in explicit
        else:
            user_set = _plain(user_value) != _plain(defaults.get(name, value))
        if name not in TRAINING_ONLY_OPTIONS and user_set and _plain(user_value) != _plain(value):
            raise UsageError(
                f"{prefix}.{name}: the checkpoint was trained with {_plain(value)!r} but the "
                f"command line / config asks for {_plain(user_value)!r}; the checkpoint defines "
                f"the model, so drop the option or set it to {_plain(value)!r}"
            )
        options[name] = value
    return options


def _plain(value: Any) -> Any:
    """Sequences as lists and integral floats as ints, so ``(1, 2)`` equals ``[1.0, 2.0]``."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def training_identities(datamodule: Any) -> dict[str, Any] | None:
    """The identities and files of ``datamodule``'s training split, as a checkpoint records
    them (``None`` when it has no training split), with a digest of each file's content, so
    that ``rareid calibrate`` recognises a renamed copy of a training image. The digests are
    computed once per datamodule, not at every save."""
    split = getattr(datamodule, "fit_split", None) if datamodule is not None else None
    if split is None or not hasattr(split, "train_ids"):
        return None
    root = Path(str(datamodule.hparams.get("root", "."))).resolve()
    files = sorted(
        os.path.relpath(record.path, root) if os.path.isabs(record.path) else record.path
        for record in split.train
    )
    listing = hashlib.sha256("\n".join(files).encode()).hexdigest()
    cached = getattr(datamodule, "_rareid_training_contents", None)
    if cached is None or cached[0] != listing:
        digests = (content_digest(root / name) for name in files)
        cached = (listing, sorted({digest for digest in digests if digest is not None}))
        with contextlib.suppress(AttributeError):  # else: digests at every save
            datamodule._rareid_training_contents = cached
    return {
        "dataset": str(datamodule.hparams.get("dataset", "")),
        "root": str(root),
        "pids": sorted(int(pid) for pid in split.train_ids),
        "files": files,
        "sha256": listing,
        "contents": cached[1],
    }


def checkpoint_to_load(
    value: str | None,
    root: str | os.PathLike,
    subcommand: str,
    has_validation: bool = True,
    overwrite: bool = False,
) -> tuple[str | None, str | None]:
    """The file ``--ckpt_path VALUE`` names for ``subcommand`` and a note to print, if any.

    ``best`` / ``last`` are the run folder's (:func:`rareid.runs.resolve_checkpoint`); a run
    that never validated has no ``best.ckpt`` and its ``last.ckpt`` stands in. ``fit`` resumes
    from ``last`` when there is one and starts a new run (path ``None``) when there is none;
    resuming and ``--overwrite`` together are a ``UsageError``.
    """
    path, note = resolve_checkpoint(value, root, has_validation)
    last = checkpoint_dir(root) / "last.ckpt"
    if value == "best" and not Path(str(path)).is_file() and last.is_file():
        path, note = (
            str(last),
            f"no best.ckpt in {last.parent} (no validation ran): using last.ckpt",
        )
    if subcommand == "fit" and overwrite:
        raise UsageError(
            f"--overwrite starts a new run (deleting the old checkpoints) and --ckpt_path "
            f"{value} resumes one: give only one of them"
        )
    if subcommand == "fit" and value == "last" and not Path(str(path)).is_file():
        return None, f"no {path} to resume from: starting a new run"
    return path, note


#: Data options a checkpoint fixes -> the model option each is linked to.
LINKED_DATA_OPTIONS = {"rates": "rates", "input_size": "img_size"}


def evaluation_options(
    checkpoint: Mapping[str, Any],
    model: Mapping[str, Any],
    data: Mapping[str, Any],
    defaults: tuple[Mapping[str, Any], Mapping[str, Any]],
    explicit: tuple[Collection[str] | None, Collection[str] | None] = (None, None),
    statistics: Callable[[str], tuple[Any, Any]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model options and the data options (rates, input size, mean and std) to evaluate
    ``checkpoint`` with: the checkpoint defines the model, and an option set against it is a
    ``UsageError`` (:func:`model_options_from_checkpoint`). ``defaults`` and ``explicit`` are
    (model, data) pairs; ``statistics(backbone)`` gives the (mean, std) of a backbone, used
    when the checkpoint saved none."""
    saved = dict(checkpoint.get("hyper_parameters") or {})
    if not saved:
        return dict(model), {}
    model, updates = dict(model), {}
    for data_key, model_key in LINKED_DATA_OPTIONS.items():
        if model_key not in saved:
            continue
        wanted = list(saved[model_key])
        model_options_from_checkpoint(
            {data_key: wanted},
            {data_key: data[data_key]},
            {data_key: defaults[1].get(data_key)},
            prefix="data",
            explicit=explicit[1],
        )
        updates[data_key] = model[model_key] = wanted
    explicit_model = explicit[0]
    if explicit_model is not None:
        explicit_model = set(explicit_model) - set(LINKED_DATA_OPTIONS.values())
    options = model_options_from_checkpoint(saved, model, defaults[0], explicit=explicit_model)
    datamodule_saved = checkpoint.get("datamodule_hyper_parameters") or {}
    for position, which in enumerate(("mean", "std")):
        value = datamodule_saved.get(which)
        if not value and statistics is not None:
            value = statistics(options["backbone"])[position]
        updates[which] = tuple(value)
    return options, updates


def validation_ranks_checkpoints(datamodule: Any) -> bool:
    """False, with a word, when validation cannot rank checkpoints (one held-out identity:
    every query's only candidate is its match, rank-1 is 100 % from the first epoch)."""
    split = getattr(datamodule, "fit_split", None)
    if split is None:
        return True
    held = len(split.val_ids)
    if held >= 2:
        return True
    print(
        f"validation holds {held} identity (data.val_identities="
        f"{datamodule.hparams.val_identities}), so its gallery has one person and "
        "val/rank1 cannot tell checkpoints apart: no best.ckpt is kept, last.ckpt (the "
        "last epoch) is the model and --ckpt_path best uses it; hold out at least 2 "
        "identities to select on validation"
    )
    return False
