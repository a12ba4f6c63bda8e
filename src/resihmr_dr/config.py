"""Typed configuration: YAML files in ``configs/`` map onto frozen dataclasses.

Unknown keys and wrong types are errors that name the file and the key path, so a typo never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from resihmr_dr.mesh_export import MESH_FRAMES, MESH_UNITS

if TYPE_CHECKING:  # imported lazily at run time: the fit stack pulls in torch
    from resihmr_dr.fit.pipeline import PipelineConfig

T = TypeVar("T")

# The default configuration installed with the package: a byte-identical copy of the repository's
# configs/default.yaml (tests/test_config.py checks both, and that they equal the code's defaults).
DEFAULT_CONFIG_PATH: Path = Path(str(resources.files("resihmr_dr") / "assets" / "default.yaml"))


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the file and key."""


@dataclass(frozen=True)
class BodyConfig:
    """Body model: ``model`` is "anny" (default) or "smplx" (``smplx_dir``, else $RESIHMR_SMPLX_DIR)."""

    model: str = "anny"
    smplx_dir: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.model not in ("anny", "smplx"):
            raise ConfigError(f"body.model must be 'anny' or 'smplx', got {self.model!r}")


MESH_FORMATS: tuple[str, ...] = ("ply", "obj", "stl", "glb")  # trimesh's exporters, by file extension


@dataclass(frozen=True)
class OutputConfig:
    """The mesh export for other tools (``outputs.write_person``; ``--mesh-format``, ``--mesh-frame``,
    ``--units``).

    ``mesh.ply`` and ``mesh_tpose.ply`` are always written in metres (the posed mesh in the camera
    frame, the T-pose in the model frame): every measurement describes them. When these settings
    differ from that (``ply``, ``camera``, ``m``), the same meshes are also written as
    ``mesh_export.<format>`` (posed, in ``mesh_frame``) and ``mesh_tpose_export.<format>`` (T-pose,
    always the model frame), scaled to ``units``.
    """

    mesh_format: str = "ply"  # ply, obj, stl (no colours) or glb
    mesh_frame: str = "camera"  # camera (OpenCV: x right, y down, z forward) or y-up (model frame)
    units: str = "m"  # m or mm (prosthetics CAD)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("mesh_format", self.mesh_format, MESH_FORMATS),
            ("mesh_frame", self.mesh_frame, MESH_FRAMES),
            ("units", self.units, tuple(MESH_UNITS)),
        ):
            if value not in allowed:
                raise ConfigError(f"output.{name} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def exports(self) -> bool:
        """Whether export files are written (the settings differ from mesh.ply's own)."""
        return (self.mesh_format, self.mesh_frame, self.units) != ("ply", "camera", "m")

    @property
    def export_files(self) -> tuple[str, ...]:
        """The export files' names (posed, T-pose), empty when none is written."""
        if not self.exports:
            return ()
        return (f"mesh_export.{self.mesh_format}", f"mesh_tpose_export.{self.mesh_format}")


def _pipeline_config():
    from resihmr_dr.fit.pipeline import PipelineConfig

    return PipelineConfig()


@dataclass(frozen=True)
class ResihmrConfig:
    """Top-level configuration (``configs/default.yaml``, installed as ``DEFAULT_CONFIG_PATH``): the
    body model, every fit stage and the mesh export."""

    body: BodyConfig = field(default_factory=BodyConfig)
    fit: "PipelineConfig" = field(default_factory=_pipeline_config)
    output: OutputConfig = field(default_factory=OutputConfig)


# Keys renamed after 0.2.0 (every iteration cap is ``iterations``, prefixed by its stage where needed):
# an old file gets an error naming the new key.
RENAMED_KEYS: dict[str, str] = {
    "max_iters": "iterations",
    "max_iter": "iterations",
    "camera_max_iters": "camera_iterations",
    "refine_iters": "refine_iterations",
}


def from_dict(cls: type[T], data: Any, *, source: str = "<config>", key_path: str = "", base: T | None = None) -> T:
    """Build dataclass ``cls`` from nested dicts, checking keys and scalar types.

    Keys not in ``data`` keep their value in ``base`` (default: the field defaults of ``cls``), and
    a nested mapping updates the nested default it replaces: ``{"refine": {"silhouette":
    {"kernel": "torch"}}}`` changes the kernel and keeps the refinement's own sigma.
    """
    where = f"{source}: {key_path or 'top level'}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    renamed = [f"{key!r} is now {RENAMED_KEYS[key]!r}" for key in unknown if RENAMED_KEYS.get(key) in fields]
    if renamed:
        raise ConfigError(f"{where}: renamed key(s): {'; '.join(renamed)}")
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    missing = sorted(
        f.name
        for f in fields.values()
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing and base is None:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    hints = typing.get_type_hints(cls, localns=_type_namespace())
    values = {}
    for name, value in data.items():
        sub_path = f"{key_path}.{name}" if key_path else name
        if dataclasses.is_dataclass(hints[name]):
            nested = getattr(base, name) if base is not None else _field_default(fields[name])
            values[name] = from_dict(hints[name], value, source=source, key_path=sub_path, base=nested)
        else:
            values[name] = _convert(hints[name], value, source=source, key_path=sub_path)
    if base is not None:
        values = {f: getattr(base, f) for f in fields} | values
    try:
        return cls(**values)
    except ValueError as err:  # the dataclasses' own range checks
        raise ConfigError(f"{where}: {err}") from None


def _field_default(f: dataclasses.Field) -> Any:
    """A field's default value (its factory called), or None when it has none."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _type_namespace() -> dict[str, Any]:
    from resihmr_dr.fit.pipeline import PipelineConfig

    return {"PipelineConfig": PipelineConfig}


def to_dict(config: Any) -> Any:
    """A config dataclass as plain nested dicts/lists (YAML- and JSON-friendly)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    return config


# A number in exponent notation without a dot, which YAML 1.1 (PyYAML) leaves a string: "1e-6".
_FLOAT_TEXT = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _convert(hint: Any, value: Any, *, source: str, key_path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, source=source, key_path=key_path)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(h for h in options if h is not type(None))
        origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key_path}: expected a list, got {type(value).__name__}")
        item = typing.get_args(hint)[0]
        return tuple(_convert(item, v, source=source, key_path=f"{key_path}[{i}]") for i, v in enumerate(value))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads "1e-6" (no dot) as a string
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{source}: {key_path}: expected {hint.__name__}, got {value!r}")
    return value


def apply_override(base: ResihmrConfig, *, key: str, value: Any, source: str = "<override>") -> ResihmrConfig:
    """``base`` with dotted ``key`` set to ``value``, re-validated (unknown key: ConfigError)."""
    data = to_dict(base)
    node = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{source}: unknown config key {key!r} (no {'.'.join(parts[: i + 1])!r})")
        if i == len(parts) - 1:
            if isinstance(node[part], dict):
                raise ConfigError(f"{source}: config key {key!r} is a section, not a value")
            node[part] = value
        else:
            node = node[part]
    return from_dict(ResihmrConfig, data, source=source)


def apply_overrides(base: ResihmrConfig, overrides: Sequence[str], *, source: str = "--set") -> ResihmrConfig:
    """``base`` with each ``"dotted.key=value"`` applied in order; the value is read as YAML
    (``80``, ``1e-5``, ``true``, ``[0, 45]``, ``null``, or a string)."""
    config = base
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. fit.refine.iterations=80")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{source} {item!r}: the value is not valid YAML ({err})") from None
        config = apply_override(config, key=key.strip(), value=value, source=f"{source} {item!r}")
    return config


def config_yaml(config: ResihmrConfig) -> str:
    """The resolved configuration as YAML (every key; loadable with :func:`load_config`)."""
    return yaml.safe_dump(to_dict(config), sort_keys=False, default_flow_style=False)


def load_config(path: str | Path | None = None) -> ResihmrConfig:
    """Read a YAML config; ``None`` reads the packaged default (``DEFAULT_CONFIG_PATH``, equal to
    ``ResihmrConfig()``). Missing keys keep their defaults."""
    if path is None:
        if not DEFAULT_CONFIG_PATH.is_file():
            raise ConfigError(f"the default configuration is missing from the installed package: {DEFAULT_CONFIG_PATH}")
        path = DEFAULT_CONFIG_PATH
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    return from_dict(ResihmrConfig, data, source=str(path))
