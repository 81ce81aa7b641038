"""Find routers by name: every Router subclass in baselines/ and algos/, or any `module:Class`.

A user's router in their own file is named by its import path (`my_routers:AlwaysLeft`) and
runs through the same runner, tracking and report as the built-in ones.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from bench.router import Router

ROUTER_PACKAGES = ("baselines", "algos")


def builtin_routers() -> dict[str, type[Router]]:
    found: dict[str, type[Router]] = {}
    for package_name in ROUTER_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package_name}.{info.name}")
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, Router) and cls is not Router and cls.__module__ == module.__name__:
                    found[cls.name] = cls
    return found


def router_class(spec: str) -> type[Router]:
    """A router class from a built-in name (quick_only) or an import path (package.module:Class)."""
    if ":" in spec:
        module_name, _, class_name = spec.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"cannot load router {spec!r}: {error}") from None
        if not (inspect.isclass(cls) and issubclass(cls, Router)):
            raise ValueError(f"{spec!r} is not a subclass of bench.router.Router")
        return cls
    routers = builtin_routers()
    if spec not in routers:
        raise ValueError(f"unknown router {spec!r}; known routers: {', '.join(sorted(routers))} "
                         f"(or give a user router as module:Class)")
    return routers[spec]
