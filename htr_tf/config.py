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
        """Load from ``.json``, ``.yaml`` or ``.yml``."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as e:  # yaml/json errors have many types
            raise ConfigError(f"{path}: cannot parse config: {e}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
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


def _is_tuple_hint(hint: Any) -> bool:
    return hint is tuple or typing.get_origin(hint) is tuple


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
