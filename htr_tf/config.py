"""Dataclass configs: built from dicts that reject unknown keys, saved as JSON or YAML.

Every config carries a ``version`` so checkpoints and recipes can be migrated on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from htr_tf.errors import ConfigError
from htr_tf.fileio import atomic_write_text

T = TypeVar("T", bound="Config")


@dataclasses.dataclass
class Config:
    """Base of all configs: strict ``from_dict``, ``to_dict``, ``load`` and ``save``."""

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any] | None) -> T:
        d = dict(d or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
        hints = typing.get_type_hints(cls)
        kwargs = {}
        for name, value in d.items():
            hint = hints.get(name)
            if isinstance(hint, type) and issubclass(hint, Config) and isinstance(value, dict):
                value = hint.from_dict(value)
            elif isinstance(value, list) and _is_tuple_hint(hint):
                value = tuple(value)
            kwargs[name] = value
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{cls.__name__}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls: type[T], path: str | os.PathLike) -> T:
        """Load from ``.json``, ``.yaml`` or ``.yml``.

        A file may start from another one: ``extends: base.yaml`` (a path relative to the file)
        takes that file's mapping and sets this file's keys over it, mappings merged key by key
        and lists replaced whole, so a recipe that differs from another in its seed and epochs
        says only that."""
        path = Path(path)
        data = _read_mapping(path, ())
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Save atomically as YAML or JSON according to the suffix."""
        path = Path(path)
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)
        else:
            text = json.dumps(_plain(self.to_dict()), indent=2)
        atomic_write_text(path, text)


#: The key of a config file that names the file it starts from (:meth:`Config.load`).
EXTENDS_KEY = "extends"


def _read_mapping(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """A config file's mapping with its ``extends`` chain resolved (``chain``: the files that
    extend it, to refuse a cycle)."""
    if not path.exists():
        where = f" (extended by {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: config file not found{where}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:  # yaml/json errors have many types
        raise ConfigError(f"{path}: cannot parse config: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    base = data.pop(EXTENDS_KEY, None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {EXTENDS_KEY} must be a file name, got {base!r}")
    here = path.resolve()
    parent = (path.parent / base).resolve()
    if parent == here or parent in chain:
        raise ConfigError(f"{path}: {EXTENDS_KEY} makes a cycle: "
                          + " -> ".join(str(p) for p in (*chain, here, parent)))
    return _merged(_read_mapping(parent, (*chain, here)), data)


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` set over ``base``: mappings merged key by key, everything else replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _is_tuple_hint(hint: Any) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
