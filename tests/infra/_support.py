"""Helpers for the infrastructure tests: the template with CloudFormation tags, SAM CLI, a static call graph."""

from __future__ import annotations

import ast
import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LAYER = ROOT / "layers" / "common"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
SAM_PY = ROOT / ".venv-sam" / "bin" / "python"
ARCHITECTURE = ROOT.parent / "shared" / "ARCHITECTURE.md"


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=1)
def template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=_Loader)


def functions() -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template()["Resources"].items() if v.get("Type") == "AWS::Serverless::Function"}


def need_sam() -> None:
    if not SAM.exists():
        pytest.skip(f"SAM CLI not installed ({SAM} missing): run `make validate` once to create .venv-sam")


def sam(*args: str, timeout: int = 170) -> subprocess.CompletedProcess[str]:
    need_sam()
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1"}
    return subprocess.run([str(SAM), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def architecture_routes() -> list[tuple[str, str]]:
    """(METHOD, path) of every HTTP route in ARCHITECTURE.md's table ("POST/GET /x", "GET/PUT /x/{id}"...)."""
    routes: list[tuple[str, str]] = []
    in_table = False
    for line in ARCHITECTURE.read_text().splitlines():
        if line.startswith("| route |"):
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            break
        if not in_table or line.startswith("| ---"):
            continue
        cell = line.split("|")[1]
        for methods, path in re.findall(r"`([A-Z/]+) (/[^`]*)`", cell):
            routes.extend((m, path) for m in methods.split("/"))
    return routes


# ---------------------------------------------------------------- static call graph of a handler


def _module_file(module: str, code_dir: Path) -> Path | None:
    parts = module.split(".")
    for base in (code_dir, LAYER):
        for candidate in (base.joinpath(*parts).with_suffix(".py"), base.joinpath(*parts, "__init__.py")):
            if candidate.exists():
                return candidate
    return None


class _Module:
    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.aliases: dict[str, str] = {}  # local name -> "module" or "module.attr"
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        self.defs: dict[str, ast.AST] = {}
        for node in self.tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                self.defs[node.name] = node
            elif isinstance(node, ast.ClassDef):
                self.defs[node.name] = node
                for item in node.body:
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        self.defs[f"{node.name}.{item.name}"] = item


class CallGraph:
    """Reachability over functions (calls and references), from a handler module's code."""

    def __init__(self, code_dir: Path) -> None:
        self.code_dir = code_dir
        self.modules: dict[str, _Module | None] = {}

    def module(self, name: str) -> _Module | None:
        if name not in self.modules:
            path = _module_file(name, self.code_dir)
            ours = path is not None and (name.startswith("bitworks") or LAYER not in path.parents)
            self.modules[name] = _Module(name, path) if path and ours else None
        return self.modules[name]

    def _resolve(self, mod: _Module, dotted: str) -> tuple[str, str] | None:
        """'x.y.z' as written in mod -> (module, def name) when it names one of our functions."""
        head, _, rest = dotted.partition(".")
        if head in mod.defs and not rest:
            return (mod.name, head)
        if head in mod.defs and rest and f"{head}.{rest}" in mod.defs:
            return (mod.name, f"{head}.{rest}")
        target = mod.aliases.get(head)
        if target is None:
            return None
        full = f"{target}.{rest}" if rest else target
        parts = full.split(".")
        for i in range(len(parts) - 1, 0, -1):
            m = self.module(".".join(parts[:i]))
            if m is not None:
                name = ".".join(parts[i:])
                if name in m.defs:
                    return (m.name, name)
                # re-exported name: follow the module's own import
                if name in m.aliases and m.aliases[name] != full:
                    return self._resolve(m, name)
                return None
        return None

    @staticmethod
    def _dotted(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            base = CallGraph._dotted(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    def reachable(self, module_name: str) -> list[tuple[str, ast.AST]]:
        """Every function body reachable from the handler module (all of its code counts as a root)."""
        root = self.module(module_name)
        assert root is not None, module_name
        seen: set[tuple[str, str]] = set()
        bodies: list[tuple[str, ast.AST]] = [(module_name, root.tree)]
        stack: list[tuple[_Module, ast.AST]] = [(root, root.tree)]
        while stack:
            mod, node = stack.pop()
            for sub in ast.walk(node):
                dotted = self._dotted(sub) if isinstance(sub, ast.Name | ast.Attribute) else None
                if not dotted:
                    continue
                found = self._resolve(mod, dotted)
                if found and found not in seen:
                    seen.add(found)
                    target = self.module(found[0])
                    assert target is not None
                    body = target.defs[found[1]]
                    bodies.append((found[0], body))
                    stack.append((target, body))
        return bodies


def required_permissions(code_dir: Path, module_name: str) -> set[str]:
    """What the reachable code does with AWS: push / close sockets, invoke dispatch / the import worker."""
    needed: set[str] = set()
    for _mod, body in CallGraph(code_dir).reachable(module_name):
        for sub in ast.walk(body):
            # bitworks.awscall's post_to_connection(s) / delete_connections, called by name or attribute
            called = sub.id if isinstance(sub, ast.Name) else sub.attr if isinstance(sub, ast.Attribute) else None
            if called in ("post_to_connection", "post_to_connections"):
                needed.add("ws:POST")
            elif called == "delete_connections":
                needed.add("ws:DELETE")
            if isinstance(sub, ast.Attribute):
                if sub.attr == "dispatch_function_name":
                    needed.add("invoke:dispatch")
                elif sub.attr == "import_function_name":
                    needed.add("invoke:import")
    return needed
