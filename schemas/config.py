"""Configuration: frozen dataclasses with presets; an optional YAML file and CLI flags map onto them.

``build_config(Cls, yaml_path, overrides)`` starts from ``Cls()`` (or a named preset), applies the
YAML mapping, then the flags (dotted names for nested fields, e.g. ``run.out_dir``). Unknown keys,
wrong types and values a dataclass rejects fail at once with one sentence naming the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad configuration: one clear sentence, raised before any work starts."""


def _coerce(name: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~"))):
            return None  # "null" from a CLI flag means "unset", as in YAML
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, a, value)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{name}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping of {tp.__name__} fields, not {value!r}")
        return _apply(tp(), value, name + ".")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, not {value!r}")
        inner = args[0] if args else Any
        return tuple(_coerce(name, inner, v) for v in value) if origin is tuple else [_coerce(name, inner, v) for v in value]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, not {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{name} must be one of {', '.join(repr(a) for a in args)}, not {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{name} must be true or false, not {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str):
        if isinstance(value, tp) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return tp(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be {tp.__name__}, not {value!r}")
    return value


def _apply(obj: Any, changes: dict, prefix: str = "") -> Any:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    nested: dict[str, dict] = {}
    direct: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if head not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"unknown setting {prefix + head!r} (known: {known})")
        if rest:
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    new: dict[str, Any] = {}
    for name, value in direct.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and isinstance(value, dict):
            new[name] = _apply(getattr(obj, name), value, prefix + name + ".")
        else:
            new[name] = _coerce(prefix + name, tp, value)
    for name, sub in nested.items():
        base = new.get(name, getattr(obj, name))
        if not dataclasses.is_dataclass(base):
            raise ConfigError(f"{prefix + name} has no sub-settings")
        new[name] = _apply(base, sub, prefix + name + ".")
    try:
        return dataclasses.replace(obj, **new)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{prefix.rstrip('.') or type(obj).__name__}: {e}") from None


def apply_settings(obj: Any, changes: dict, prefix: str = "") -> Any:
    """``obj`` (a frozen dataclass) with ``changes`` (nested or dotted names) applied and coerced to the field
    types; ConfigError naming the setting for an unknown name or a bad value."""
    return _apply(obj, changes, prefix)


def load_yaml(path: str | Path) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML ({e.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of settings")
    return data


def parse_sets(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` flags as overrides for ``build_config`` (``KEY=null`` unsets an optional field)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE, not {item!r}")
        out[key.strip()] = value
    return out


def build_config(cls: type, yaml_path: str | Path | None = None, overrides: dict | None = None,
                 preset: str | None = None) -> Any:
    """``cls`` (or ``cls.<preset>()``) with the YAML file, then the overrides, applied."""
    if preset:
        maker = getattr(cls, preset, None)
        if not callable(maker):
            raise ConfigError(f"unknown preset {preset!r} for {cls.__name__}")
        obj = maker()
    else:
        obj = cls()
    if yaml_path:
        obj = _apply(obj, load_yaml(yaml_path))
    if overrides:
        obj = _apply(obj, {k: v for k, v in overrides.items() if v is not None})
    return obj


def config_dict(obj: Any) -> dict:
    """A config as plain YAML/JSON values (tuples become lists), the shape ``build_config`` reads back."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def dump_yaml(obj: Any) -> str:
    """A config as YAML that ``--config`` accepts back."""
    import yaml

    return yaml.safe_dump(config_dict(obj), sort_keys=False, default_flow_style=False, allow_unicode=True)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested settings as dotted names: ``{"caption": {"batch_size": 8}}`` -> ``{"caption.batch_size": 8}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
