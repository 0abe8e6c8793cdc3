"""Typed parameters: ``params.yaml`` → one validated config dataclass per stage.

``params.yaml`` is the smoke profile. Setting its top-level key ``profile: full``
(or ``dvc exp run -S profile=full``) deep-merges ``profiles/full.yaml`` over it:
that is the one switch to the paper-scale setup.

Every section is checked before any work starts: unknown keys, wrong types and
impossible values raise :class:`ParamError` naming the key, e.g.
``params.yaml: data.world.mistake_rate: must be in [0, 1], got 1.5``.

Stage configs are dataclasses that live beside the code they configure (TRL
style); :data:`SECTIONS` maps each ``params.yaml`` section to its class, in the
stage module ``rlbff_lib/stages/<section>.py``. A notebook's ``parameters`` cell
names the section's top-level keys set to ``None`` ("take params.yaml"); papermill
overrides are merged over the section by :func:`stage_config`, which rejects names
the section does not have.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import importlib
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from rlbff_lib.core.io import DataError, read_yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("smoke", "full", "rehearsal")
# profile -> the overlays merged over params.yaml, in order: the rehearsal is the full profile with the
# documented substitutions of profiles/rehearsal.yaml (small local stand-ins; tests/test_rehearsal.py)
PROFILE_OVERLAYS = {"smoke": (), "full": ("full",), "rehearsal": ("full", "rehearsal")}

# section name -> "module:ClassName" (imported lazily so a section's heavy deps load only when used)
SECTIONS: dict[str, str] = {
    "data": "rlbff_lib.stages.data:DataConfig",
    "assets": "rlbff_lib.stages.assets:AssetsConfig",
    "principles": "rlbff_lib.stages.principles:PrinciplesConfig",
    "reward_models": "rlbff_lib.stages.reward_models:RewardModelsConfig",
    "rm_eval": "rlbff_lib.stages.rm_eval:RMEvalConfig",
    "alignment": "rlbff_lib.stages.alignment:AlignmentStageConfig",
    "report": "rlbff_lib.stages.report:ReportConfig",
}


class ParamError(ValueError):
    """A parameter that is unknown, of the wrong type or impossible; names the key."""


def section_class(name: str) -> type:
    module, cls = SECTIONS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; returns the (converted) value."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ParamError as e:
                errors.append(str(e))
        raise ParamError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ParamError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ParamError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = args if args else (Any, Any)
        return {_coerce(k, kt, f"{key} (key)"): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ParamError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return build(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ParamError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def build(cls: type, values: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking keys, types and values.

    Missing keys take the dataclass default (the embedded smoke default). The
    dataclass's ``__post_init__`` checks values and raises ``ValueError`` whose
    message starts with the field name; it is re-raised prefixed with the path.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ParamError(f"{where}{unknown[0]}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key)
    try:
        return cls(**kwargs)
    except ParamError:
        raise
    except (ValueError, TypeError) as e:
        raise ParamError(f"{prefix}.{e}" if prefix else str(e)) from None


def to_dict(cfg: Any) -> dict:
    """A config dataclass as plain (YAML-ready) data."""
    return dataclasses.asdict(cfg)


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_raw(path: str | Path = REPO_ROOT / "params.yaml") -> dict:
    """``params.yaml`` as a dict, with ``profiles/<profile>.yaml`` merged over it."""
    path = Path(path)
    if not path.is_file():
        raise ParamError(f"{path}: file not found")
    try:
        raw = read_yaml(path)  # a repeated key is an error, not the last one silently winning
    except DataError as e:
        raise ParamError(str(e)) from None
    if raw is None:
        raise ParamError(f"{path}: empty; it needs at least `profile: smoke` (then every section takes its defaults)")
    if not isinstance(raw, dict):
        raise ParamError(f"{path}: expected a mapping at top level")
    profile = raw.get("profile", "smoke")
    if profile not in PROFILES:
        raise ParamError(f"{path}: profile: must be one of {list(PROFILES)}, got {profile!r}")
    for name in PROFILE_OVERLAYS[profile]:
        overlay_path = path.parent / "profiles" / f"{name}.yaml"
        if not overlay_path.is_file():
            raise ParamError(f"{overlay_path}: profile file not found (profile: {profile})")
        try:
            overlay = read_yaml(overlay_path) or {}
        except DataError as e:
            raise ParamError(str(e)) from None
        raw = deep_merge(raw, overlay)
    return raw


def load_params(path: str | Path = REPO_ROOT / "params.yaml", sections: list[str] | None = None) -> dict[str, Any]:
    """Load and validate every section (or ``sections``); returns name -> config.

    Also checks that no unknown top-level section is present.
    """
    raw = read_raw(path)
    allowed = set(SECTIONS) | {"profile"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ParamError(f"{path}: {unknown[0]}: unknown section (known: {', '.join(sorted(allowed))})")
    out: dict[str, Any] = {"profile": raw.get("profile", "smoke")}
    for name in sections or list(SECTIONS):
        try:
            out[name] = build(section_class(name), raw.get(name) or {}, name)
        except ParamError as e:
            raise ParamError(f"{Path(path).name}: {e}") from None
    return out


# names papermill may inject besides a section's keys: the harness's own, and papermill's --inject-* paths
HARNESS_PARAMETERS = ("output_root", "PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH")


def project_root(start: str | Path | None = None) -> Path:
    """The repository a stage reads from: ``$RLBFF_ROOT``, else the nearest folder at or above
    ``start`` (default: the current folder) holding ``dvc.yaml`` and ``params.yaml``, else the
    checkout this package was loaded from. A notebook opened from ``notebooks/`` finds its clone."""
    if os.environ.get("RLBFF_ROOT"):
        return Path(os.environ["RLBFF_ROOT"]).resolve()
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
            return folder
    return REPO_ROOT


def params_file(root: str | Path | None = None) -> Path:
    """The params file a stage reads: ``$RLBFF_PARAMS``, else ``<root>/params.yaml``."""
    if os.environ.get("RLBFF_PARAMS"):
        return Path(os.environ["RLBFF_PARAMS"]).resolve()
    return Path(root or project_root()) / "params.yaml"


def injected_names(namespace: dict) -> set[str] | None:
    """Names assigned by papermill's injected-parameters cell, found in the kernel's input history
    (papermill's cell opens with exactly ``# Parameters``); ``None`` outside IPython."""
    history = namespace.get("In") or namespace.get("_ih")
    if not isinstance(history, list):
        return None
    for source in reversed(history):
        if isinstance(source, str) and source.startswith("# Parameters\n"):
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return set()
            return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)}
    return set()


def _field_type(cls: type, name: str) -> Any:
    tp = typing.get_type_hints(cls).get(name)
    if typing.get_origin(tp) in (Union, types.UnionType):  # Optional[Config] -> Config
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else tp
    return tp


def merge_overrides(cls: type, base: dict, overrides: dict) -> dict:
    """``overrides`` over ``base`` (a section's raw mapping): a nested config (dataclass field) is merged key
    by key, anything else (numbers, lists, free-key mappings such as ``models``) is replaced whole."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        tp = _field_type(cls, key) if dataclasses.is_dataclass(cls) else None
        if dataclasses.is_dataclass(tp) and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_overrides(tp, out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_text(cls: type, key: str, value: Any, prefix: str) -> Any:
    """A string given for a field that takes no string (``papermill -p world "{n_prompts: 500}"``) is
    read as YAML; anything else is returned as is."""
    if not isinstance(value, str):
        return value
    try:
        _coerce(value, typing.get_type_hints(cls)[key], f"{prefix}.{key}")
        return value
    except (ParamError, KeyError):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value


def check_parameter_names(name: str, given: typing.Iterable[str]) -> None:
    """Raise :class:`ParamError` naming every parameter that section ``name`` does not have."""
    keys = [f.name for f in dataclasses.fields(section_class(name)) if f.init]
    unknown = sorted(set(given) - set(keys) - set(HARNESS_PARAMETERS))
    if unknown:
        raise ParamError(f"{name}: unknown parameter{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))} (allowed: {', '.join(keys + ['output_root'])})")


def stage_config(name: str, namespace: dict, params_path: str | Path | None = None) -> Any:
    """Build the config of section ``name``: the params file's section with the notebook's overrides.

    The notebook's ``parameters`` cell sets each top-level key of the section to ``None`` ("take
    params.yaml"); papermill ``-p``/``-y`` replace some. Each key that is not ``None`` in ``namespace``
    is merged over the section of ``params_path`` (default :func:`params_file`; nested configs key by
    key, see :func:`merge_overrides`) and the result validated. A name papermill injected that the
    section does not have raises :class:`ParamError` naming it.
    """
    cls = section_class(name)
    keys = [f.name for f in dataclasses.fields(cls) if f.init]
    injected = injected_names(namespace)
    if injected:
        check_parameter_names(name, injected)
    missing = [k for k in keys if k not in namespace]
    if missing:
        raise ParamError(f"{name}.{missing[0]}: not defined in the notebook's parameters cell")
    overrides = {k: _parse_text(cls, k, namespace[k], name) for k in keys if namespace[k] is not None}
    path = Path(params_path) if params_path else params_file()
    base = read_raw(path).get(name) or {}
    try:
        build(cls, base, name)
    except ParamError as e:
        raise ParamError(f"{path.name}: {e}") from None
    try:
        return build(cls, merge_overrides(cls, base, overrides), name)
    except ParamError as e:
        raise ParamError(f"parameters: {e}") from None
