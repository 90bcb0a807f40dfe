"""Drivers by name: one name → constructor map per driver kind (as Incus' drivers/load.go).

Each driver module is imported only when its driver is built, so that a host without, say,
pyroute2 or liblxc can still use the others. Every kind's registry raises the same error for a
name it does not know: `Unsupported` naming the known ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from lxcloud.core.errors import Unsupported

T = TypeVar("T")


class Registry(Generic[T]):
    """Named drivers of one kind ("compute", "storage", "network")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._ctors: dict[str, Callable[..., T]] = {}

    def add(self, name: str, target: str) -> None:
        """Register `name` as "package.module:Class" (imported when first built)."""
        module, _, attr = target.partition(":")

        def ctor(**kw: Any) -> T:
            cls = getattr(importlib.import_module(module), attr)
            return cls(**kw)  # type: ignore[no-any-return]

        self._ctors[name] = ctor

    def get(self, name: str, **kw: Any) -> T:
        """A new driver `name` built with `kw`; Unsupported for a name not registered."""
        try:
            ctor = self._ctors[name]
        except KeyError:
            raise Unsupported(f"unknown {self.kind} driver {name!r} (known: {', '.join(self.names())})",
                              resource=f"{self.kind}_driver", driver=name) from None
        return ctor(**kw)

    def names(self) -> list[str]:
        return sorted(self._ctors)
