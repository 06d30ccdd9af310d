"""Named registries: encoders, methods and samplers are looked up by name, never by if-chains.

>>> models = Registry("model")
>>> @models.register("double")
... def double(x):
...     return 2 * x
>>> models.get("double")(3)
6
>>> models.get("triple")
Traceback (most recent call last):
...
KeyError: "unknown model 'triple'; valid: double"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry:
    """A name -> factory mapping with a clear error for unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(factory: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = factory
            return factory

        return wrap

    def get(self, name: str) -> Callable[..., Any]:
        if name not in self._items:
            raise KeyError(f"unknown {self.kind} '{name}'; valid: {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
