"""Read template.yaml (CloudFormation short tags kept as plain values) and load handlers by path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    return {name: value}


_Loader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass


def functions() -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in template()["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}


def http_routes() -> dict[tuple[str, str], str]:
    """(METHOD, path) -> function logical id, for every HttpApi event."""
    routes = {}
    for name, props in functions().items():
        for event in (props.get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                routes[(event["Properties"]["Method"].upper(), event["Properties"]["Path"])] = name
    return routes


_loaded: dict[str, Callable[..., Any]] = {}


def handler_path(logical_id: str) -> Path:
    props = functions()[logical_id]
    module_name = props["Handler"].rsplit(".", 1)[0]
    return ROOT / props["CodeUri"] / (module_name.replace(".", "/") + ".py")


def load_handler(logical_id: str) -> Callable[..., Any]:
    """Import a function's handler module from its CodeUri, under a unique module name."""
    if logical_id in _loaded:
        return _loaded[logical_id]
    func_name = functions()[logical_id]["Handler"].rsplit(".", 1)[1]
    path = handler_path(logical_id)
    unique = f"_fn_{logical_id}"
    spec = importlib.util.spec_from_file_location(unique, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    spec.loader.exec_module(module)
    handler = getattr(module, func_name)
    _loaded[logical_id] = handler
    return handler
