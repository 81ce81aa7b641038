"""Find routers by name: every Router subclass in baselines/ and algos/, or any `module:Class`.

A user's router in their own file is named by its import path (`my_routers:AlwaysLeft`) and
runs through the same runner, tracking and report as the built-in ones. Options of a router's
constructor follow in brackets: `random_switch[p=0.3]`, `confidence_cascade[threshold=0.2]`,
`my_routers:EveryK[k=3]`; the whole spec is the setting's name in MLflow and the report.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from bench.running.router import Router, router_options

_SPEC = re.compile(r"^(?P<path>[\w.:]+)(?:\[(?P<options>[^\]]*)\])?$")


@dataclass(frozen=True)
class RouterSpec:
    """A router class and the constructor options of one setting of it."""

    cls: type[Router]
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def make(self) -> Router:
        return self.cls(**self.options)


def _convert(cls: type[Router], name: str, raw: str, param: inspect.Parameter) -> Any:
    kind = param.annotation if param.annotation is not inspect.Parameter.empty else type(param.default)
    members = [k for k in typing.get_args(kind) if k is not type(None)]
    if members and len(members) < len(typing.get_args(kind)):  # `float | None`: an optional float
        if raw.lower() == "none":
            return None
        kind = members[0] if len(members) == 1 else kind
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        return kind(raw) if kind in (int, float, str) else raw
    except ValueError:
        raise ValueError(f"router {cls.name!r}: option {name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}"
                         ) from None


def router_spec(spec: str) -> RouterSpec:
    """Parse `name[opt=value,...]` (or `module:Class[...]`) into the class and its typed options."""
    match = _SPEC.fullmatch(spec.strip())
    if match is None:
        raise ValueError(f"cannot read router spec {spec!r}: write name or name[option=value,...]")
    cls = router_class(match["path"])
    known = router_options(cls)
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in (match["options"] or "").split(","))):
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq or name not in known:
            listing = ", ".join(known) or "none"
            raise ValueError(f"router {cls.name!r} has no option {name!r}; its options: {listing}")
        options[name] = _convert(cls, name, raw.strip(), known[name])
    label = cls.name + (f"[{','.join(f'{k}={v}' for k, v in options.items())}]" if options else "")
    return RouterSpec(cls, options, label)

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
            raise ValueError(f"{spec!r} is not a subclass of bench.running.router.Router")
        return cls
    routers = builtin_routers()
    if spec not in routers:
        raise ValueError(f"unknown router {spec!r}; known routers: {', '.join(sorted(routers))} "
                         f"(or give a user router as module:Class)")
    return routers[spec]
