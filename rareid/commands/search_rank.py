"""How ``rareid search`` embeds its queries and ranks the gallery: through the torch index
(checkpoint, re-ranking, approximate index) or, for an exported model, without torch
(:func:`rank_without_torch`: the runtime's NumPy embeddings ranked by faiss)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from rareid.deploy.gallery.index import GalleryIndex
    from rareid.deploy.gallery.record import IndexRecord
    from rareid.deploy.search.exact import SearchResult
    from rareid.deploy.search.prefix import ArraySearch


@dataclass
class Queries:
    """The readable query crops, their sizes, rates and levels, and the ones skipped."""

    paths: list[Path] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[Path, str] = field(default_factory=dict)
    reference: float = 0.0
    reference_width: float = 0.0


def without_torch(args: argparse.Namespace, record: IndexRecord) -> bool:
    """Whether this search runs without torch: queries embedded by an exported model and
    ranked exactly through faiss (no re-ranking, no approximate index, the Euclidean
    distance); otherwise the index is loaded in tensors."""
    from rareid.deploy.gallery.faiss_import import faiss_available

    return (
        args.backend == "onnx"
        and not args.rerank
        and record.ann_meta is None
        and record.metric == "euclidean"
        and faiss_available()
    )


def rank_queries(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    index: GalleryIndex | IndexRecord,
    ckpt: str | None,
    queries: Queries,
) -> tuple[SearchResult | ArraySearch, Any]:
    """Embed the queries at their levels and rank the gallery: the result (in the order shown)
    and the prefix distances (Eq. 2) the verdicts are taken from."""
    from rareid.deploy.gallery.record import IndexRecord

    if isinstance(index, IndexRecord):
        return rank_without_torch(parser, args, index, queries)
    import torch

    from rareid.deploy.model.backend_torch import TorchBackend
    from rareid.deploy.model.backends import EmbeddingBackend, embed_in_batches, open_file_runtime
    from rareid.deploy.model.bundle import resolve_bundle
    from rareid.deploy.model.checks import check_finite_embeddings, resolve_device
    from rareid.deploy.model.inference import load_model
    from rareid.deploy.search.exact import Searcher

    levels = torch.tensor([info["level"] for info in queries.infos], dtype=torch.long)
    try:
        runtime: EmbeddingBackend
        if args.backend == "onnx":
            runtime = open_file_runtime(
                resolve_bundle(args.onnx, args.weights), expected_sha256=index.checkpoint_sha256
            )
        else:
            model = load_model(ckpt, resolve_device(args.device))[0]
            runtime = TorchBackend(model)
        index.check_model(runtime)
        embeddings = embed_in_batches(
            runtime, queries.images, index.preprocess, levels, args.batch_size
        )
        check_finite_embeddings(embeddings, "the query embeddings")
        engine = "auto" if args.backend == "onnx" else args.backend
        if not args.rerank:
            result = Searcher(index).search(embeddings, levels, args.top_k, engine)
            return result, result.distances
        from rareid.deploy.search.rerank import rerank_search

        return rerank_search(
            index,
            embeddings,
            levels,
            args.top_k,
            k1=args.rerank_k1,
            k2=args.rerank_k2,
            lambda_value=args.rerank_lambda,
        )
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))


def rank_without_torch(
    parser: argparse.ArgumentParser, args: argparse.Namespace, index: IndexRecord, queries: Queries
) -> tuple[ArraySearch, Any]:
    """:func:`_rank` through an exported model's runtime and faiss, in NumPy (no torch)."""
    import numpy as np

    from rareid.deploy.model.backends import embed_in_batches, open_file_runtime
    from rareid.deploy.model.bundle import resolve_bundle
    from rareid.deploy.search.prefix import search_record

    levels = np.asarray([info["level"] for info in queries.infos], dtype=np.int64)
    try:
        runtime = open_file_runtime(
            resolve_bundle(args.onnx, args.weights),
            expected_sha256=index.checkpoint_sha256,
            threads=args.threads,
        )
        index.check_model(runtime)
        embeddings = embed_in_batches(
            runtime, queries.images, index.preprocess, levels, args.batch_size, arrays=True
        )
        if not np.isfinite(embeddings).all():
            raise ValueError("the query embeddings hold NaN or infinite values")
        result = search_record(index, embeddings, levels, args.top_k)
    except (ImportError, ValueError, OSError) as error:
        parser.error(str(error))
    return result, result.distances
