"""Grid files of ``rareid experiment``: parsing and validation (the format: :mod:`rareid.experiment`),
and the command-line form of their ``key: value`` overrides."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Checkpoint = Literal["last", "best"]


class GridError(ValueError):
    """A grid file that cannot be run; the message names the file and what to change."""


@dataclass(frozen=True)
class Variant:
    """One row of a table: config layers and overrides on top of the grid's base."""

    name: str
    configs: tuple[str, ...] = ()
    overrides: Mapping[str, Any] = field(default_factory=dict)
    fit_from: str | None = None
    test_overrides: Mapping[str, Any] = field(default_factory=dict)
    series: str | None = None  # a learning-curve grid: the curve this variant is a point of
    budget: float | None = None  # ... and its x (e.g. training epochs)

    @property
    def slug(self) -> str:
        """Folder name of the variant (its name, filesystem-safe)."""
        return slugify(self.name)


@dataclass(frozen=True)
class Grid:
    """A parsed grid file (see the module docstring)."""

    name: str
    path: Path
    base: tuple[str, ...]
    output: Path
    variants: tuple[Variant, ...]
    checkpoint: Checkpoint = "last"
    sanity: str | None = None
    warm_start: Mapping[str, Any] | None = None
    rows: tuple[Mapping[str, Any], ...] = ()
    synth: Mapping[str, Any] = field(default_factory=dict)
    compare: tuple[str, str] | None = None
    runs: Path | None = None

    @property
    def runs_folder(self) -> Path:
        """Where the (variant, seed) runs live: ``runs``, else ``output``."""
        return self.output if self.runs is None else self.runs

    def variant(self, name: str) -> Variant:
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)


def slugify(name: str) -> str:
    """``"w/o val*"`` -> ``"w-o-val-star"``: stable, readable folder names."""
    text = name.replace("*", "-star").replace("+", "-plus-").replace("=", "")
    return re.sub(r"[^A-Za-z0-9._]+", "-", text).strip("-").lower() or "variant"


def _as_list(value: Any, what: str, path: Path) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise GridError(f"{path}: {what} must be a config file path or a list of them, got {value!r}")


def _as_mapping(value: Any, what: str, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise GridError(f"{path}: {what} must be a mapping of dotted keys to values")
    return {str(k): v for k, v in value.items()}


#: The keys of a grid file and of one of its variants.
GRID_KEYS = frozenset(
    {
        "name",
        "base",
        "output",
        "checkpoint",
        "sanity",
        "warm_start",
        "variants",
        "rows",
        "synth",
        "compare",
        "runs",
    }
)
VARIANT_KEYS = frozenset(
    {"name", "configs", "overrides", "fit_from", "test_overrides", "series", "budget"}
)


def _read_grid_file(path: Path) -> dict[str, Any]:
    """The YAML mapping of a grid file, with a list of variants and no unknown key."""
    if not path.is_file():
        raise GridError(f"grid file {path} does not exist (see conf/grids/ for examples)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise GridError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
        raise GridError(f"{path}: expected a mapping with a list of `variants`")
    known = set(GRID_KEYS)
    unknown = sorted(set(data) - known)
    if unknown:
        raise GridError(f"{path}: unknown keys {unknown}; known keys are {sorted(known)}")
    return data


def _curve_point(entry: Mapping[str, Any], path: Path) -> tuple[str | None, float | None]:
    """A variant's ``series`` and ``budget`` (both or neither): a point of a learning curve."""
    series, budget = entry.get("series"), entry.get("budget")
    if series is None and budget is None:
        return None, None
    if (
        not isinstance(series, str)
        or isinstance(budget, bool)
        or not isinstance(budget, (int, float))
    ):
        raise GridError(
            f"{path}: variant {entry['name']!r} needs both `series` (a curve name) and "
            f"`budget` (a number), got series={series!r}, budget={budget!r}"
        )
    return series, float(budget)


def _variants(entries: list[Any], path: Path) -> list[Variant]:
    """The ``variants`` of a grid file: named, distinct, ``fit_from`` naming another one."""
    variants = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise GridError(f"{path}: every variant needs a `name`, got {entry!r}")
        extra = sorted(set(entry) - VARIANT_KEYS)
        if extra:
            raise GridError(f"{path}: variant {entry['name']!r} has unknown keys {extra}")
        variants.append(
            Variant(
                name=entry["name"],
                configs=_as_list(entry.get("configs"), "configs", path),
                overrides=_as_mapping(entry.get("overrides"), "overrides", path),
                fit_from=entry.get("fit_from"),
                test_overrides=_as_mapping(entry.get("test_overrides"), "test_overrides", path),
                series=_curve_point(entry, path)[0],
                budget=_curve_point(entry, path)[1],
            )
        )
    names = [v.name for v in variants]
    slugs = [v.slug for v in variants]
    if len(set(slugs)) != len(slugs):
        raise GridError(f"{path}: variant names must be distinct (as folder names): {names}")
    for variant in variants:
        if variant.fit_from is not None and variant.fit_from not in names:
            raise GridError(
                f"{path}: variant {variant.name!r} has fit_from {variant.fit_from!r}, "
                f"which is not a variant name ({names})"
            )
        if variant.fit_from is not None and (variant.configs or variant.overrides):
            raise GridError(
                f"{path}: variant {variant.name!r} tests another fit (fit_from); give it only "
                "test_overrides"
            )
    return variants


def _rows(data: dict[str, Any], names: list[str], path: Path) -> tuple[Mapping[str, Any], ...]:
    """The averaged ``rows``: each a ``name`` and ``mean_of`` variant names."""
    rows = tuple(data.get("rows") or ())
    for row in rows:
        members = row.get("mean_of") if isinstance(row, dict) else None
        if not isinstance(row.get("name") if isinstance(row, dict) else None, str) or not (
            isinstance(members, list) and members and all(m in names for m in members)
        ):
            raise GridError(
                f"{path}: every entry of `rows` needs a `name` and `mean_of`, a list of "
                f"variant names ({names}); got {row!r}"
            )
    return rows


def _warm_start(value: Any, path: Path) -> dict[str, Any] | None:
    """The ``warm_start`` recipe: ``configs``, ``overrides``, the ``out`` folder, the ``synth``
    options of its own data (a separate identity pool) and an optional ``shipped`` backbone
    file trained with this recipe, used when none has been trained here."""
    if value is None:
        return None
    if not isinstance(value, dict) or not value.get("configs"):
        raise GridError(f"{path}: warm_start needs `configs` (and optionally `overrides`)")
    synth = _as_mapping(value.get("synth"), "warm_start.synth", path)
    if synth and "out" not in synth:
        raise GridError(f"{path}: warm_start.synth needs `out` and rareid synth options")
    return {
        "configs": _as_list(value["configs"], "warm_start.configs", path),
        "overrides": _as_mapping(value.get("overrides"), "warm_start.overrides", path),
        "out": value.get("out"),
        "synth": synth,
        "shipped": value.get("shipped"),
    }


def load_grid(path: str | os.PathLike) -> Grid:
    """Read and check a grid file; every problem is a :class:`GridError` naming the file."""
    path = Path(path)
    data = _read_grid_file(path)
    variants = _variants(data["variants"], path)
    names = [v.name for v in variants]
    checkpoint = data.get("checkpoint", "last")
    if checkpoint not in ("last", "best"):
        raise GridError(f"{path}: checkpoint must be 'last' or 'best', got {checkpoint!r}")
    rows = _rows(data, names, path)
    sanity = data.get("sanity")
    if sanity is not None and sanity not in names:
        raise GridError(f"{path}: sanity {sanity!r} is not a variant name ({names})")
    warm_start = _warm_start(data.get("warm_start"), path)
    compare = data.get("compare")
    if compare is not None and not (
        isinstance(compare, list) and len(compare) == 2 and all(c in names for c in compare)
    ):
        raise GridError(
            f"{path}: compare must name two variants, baseline first ({names}); got {compare!r}"
        )
    synth = _as_mapping(data.get("synth"), "synth", path)
    if synth and "out" not in synth:
        raise GridError(f"{path}: synth needs `out` (the dataset folder) and rareid synth options")
    return Grid(
        name=str(data.get("name") or path.stem),
        path=path,
        base=_as_list(data.get("base"), "base", path),
        output=Path(data.get("output") or Path("runs/experiments") / path.stem),
        variants=tuple(variants),
        checkpoint=checkpoint,
        sanity=sanity,
        warm_start=warm_start,
        rows=rows,
        synth=synth,
        compare=tuple(compare) if compare else None,
        runs=Path(data["runs"]) if data.get("runs") else None,
    )


def _cli_value(value: Any) -> str:
    """A YAML flow value as jsonargparse reads it on the command line (``[8]``, ``false``)."""
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


def override_args(overrides: Mapping[str, Any]) -> list[str]:
    return [f"--{key}={_cli_value(value)}" for key, value in overrides.items()]


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["trainer.max_epochs=1"]`` -> ``{"trainer.max_epochs": 1}`` (values read as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GridError(f"--set {item!r}: expected KEY=VALUE, e.g. trainer.max_epochs=1")
        out[key] = yaml.safe_load(value)
    return out
