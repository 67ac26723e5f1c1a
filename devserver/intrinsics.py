"""CloudFormation YAML loading and intrinsic-function resolution.

Short tags (!Ref, !Sub ...) are turned into their long JSON form ({"Fn::Sub": ...}) at
load time, so the resolver only has to understand one shape. Resolution never raises:
anything it cannot compute locally becomes a harmless placeholder string, because an
emulator that refuses to start over an Aurora endpoint is useless.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import yaml

log = logging.getLogger("devserver")

NO_VALUE = object()  # AWS::NoValue: the enclosing key / list item disappears


# --------------------------------------------------------------------------- loading
class CfnLoader(yaml.SafeLoader):
    """SafeLoader that knows CloudFormation short-form tags."""


def _construct(tag: str, node: yaml.Node, loader: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag == "Ref":
        return {"Ref": value}
    if tag == "Condition":
        return {"Condition": value}
    if tag == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag}": value}


for _tag in (
    "Ref",
    "Condition",
    "Sub",
    "GetAtt",
    "Join",
    "If",
    "Select",
    "Split",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "ImportValue",
    "Base64",
    "Cidr",
    "GetAZs",
    "Transform",
    "ToJsonString",
    "Length",
):
    CfnLoader.add_constructor(f"!{_tag}", lambda loader, node, t=_tag: _construct(t, node, loader))


def load_yaml(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    return data if isinstance(data, dict) else {}


def fake_id(*parts: str, length: int = 10) -> str:
    """Stable lowercase-alnum id, shaped like API Gateway ids."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    n = int(digest, 16)
    out = []
    for _ in range(length):
        n, r = divmod(n, len(alphabet))
        out.append(alphabet[r])
    return "".join(out)


# --------------------------------------------------------------------------- resolving
class Resolver:
    """Evaluates intrinsics against parameters, pseudo parameters and resources.

    `ref_hook(logical_id, resource)` and `getatt_hook(logical_id, resource, attr)` let the
    template layer decide what a resource's Ref / attribute means locally.
    """

    def __init__(
        self,
        template: dict[str, Any],
        parameters: dict[str, Any],
        pseudo: dict[str, Any],
        ref_hook: Callable[[str, dict[str, Any]], Any],
        getatt_hook: Callable[[str, dict[str, Any], str], Any],
    ) -> None:
        self.template = template
        self.resources: dict[str, Any] = template.get("Resources") or {}
        self.mappings: dict[str, Any] = template.get("Mappings") or {}
        self.parameters = parameters
        self.pseudo = pseudo
        self.ref_hook = ref_hook
        self.getatt_hook = getatt_hook
        self._conditions_raw: dict[str, Any] = template.get("Conditions") or {}
        self._conditions: dict[str, bool] = {}
        self._evaluating: set[str] = set()
        self._warned: set[str] = set()

    # -- public
    def resolve(self, value: Any) -> Any:
        out = self._resolve(value)
        return None if out is NO_VALUE else out

    def condition(self, name: str) -> bool:
        if name in self._conditions:
            return self._conditions[name]
        if name not in self._conditions_raw or name in self._evaluating:
            self._warn(f"condition:{name}", f"unknown or cyclic condition {name!r}; assuming false")
            return False
        self._evaluating.add(name)
        try:
            result = bool(self._truthy(self._resolve(self._conditions_raw[name])))
        finally:
            self._evaluating.discard(name)
        self._conditions[name] = result
        return result

    # -- internals
    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("template: %s", message)

    @staticmethod
    def _truthy(v: Any) -> bool:
        if isinstance(v, str):
            return v.lower() == "true"
        return bool(v)

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
                try:
                    return self._intrinsic(key, arg)
                except Exception as exc:  # noqa: BLE001 - one odd value must never kill the emulator
                    self._warn(f"{key}:{arg!r}", f"cannot resolve {key} {arg!r}: {exc}")
                    return f"unresolved-{key.replace('::', '-')}"
        out = {}
        for k, v in value.items():
            r = self._resolve(v)
            if r is not NO_VALUE:
                out[k] = r
        return out

    def _ref(self, name: Any) -> Any:
        name = self._resolve(name)
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.ref_hook(name, self.resources[name])
        self._warn(f"ref:{name}", f"unknown Ref {name!r}; using a placeholder")
        return f"placeholder-{name}"

    def _getatt(self, arg: Any) -> Any:
        arg = self._resolve(arg)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        logical, attr = str(arg[0]), str(arg[1]) if len(arg) > 1 else ""
        resource = self.resources.get(logical)
        if resource is None:
            self._warn(f"getatt:{logical}", f"GetAtt of unknown resource {logical!r}")
            return f"placeholder-{logical}-{attr}"
        return self.getatt_hook(logical, resource, attr)

    def _sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], (arg[1] if len(arg) > 1 else {}) or {}
        else:
            text, variables = arg, {}
        variables = {k: self._resolve(v) for k, v in variables.items()}

        def repl(m: re.Match[str]) -> str:
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            expr = expr.strip()
            if expr in variables:
                val = variables[expr]
            elif "." in expr and expr.split(".", 1)[0] in self.resources:
                val = self._getatt(expr.split(".", 1))
            else:
                val = self._ref(expr)
            if isinstance(val, list):
                val = ",".join(map(str, val))
            return "" if val is NO_VALUE else str(val)

        return re.sub(r"\$\{([^}]*)\}", repl, str(self._resolve(text)))

    def _intrinsic(self, key: str, arg: Any) -> Any:
        if key == "Ref":
            return self._ref(arg)
        if key == "Condition":
            return self.condition(str(arg))
        if key == "Fn::GetAtt":
            return self._getatt(arg)
        if key == "Fn::Sub":
            return self._sub(arg)
        if key == "Fn::Join":
            sep, items = arg[0], self._resolve(arg[1])
            if not isinstance(items, list):
                items = [items]
            return str(self._resolve(sep)).join(str(i) for i in items)
        if key == "Fn::Select":
            index, items = int(self._resolve(arg[0])), self._resolve(arg[1])
            return items[index]
        if key == "Fn::Split":
            sep, text = self._resolve(arg[0]), self._resolve(arg[1])
            return str(text).split(str(sep))
        if key == "Fn::If":
            name, yes, no = arg
            return self._resolve(yes if self.condition(str(name)) else no)
        if key == "Fn::Equals":
            a, b = (self._resolve(x) for x in arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not self._truthy(self._resolve(arg[0] if isinstance(arg, list) else arg))
        if key == "Fn::And":
            return all(self._truthy(self._resolve(x)) for x in arg)
        if key == "Fn::Or":
            return any(self._truthy(self._resolve(x)) for x in arg)
        if key == "Fn::FindInMap":
            m, k1, k2 = (self._resolve(x) for x in arg[:3])
            try:
                return self.mappings[m][k1][k2]
            except KeyError:
                if len(arg) > 3 and isinstance(arg[3], dict) and "DefaultValue" in arg[3]:
                    return self._resolve(arg[3]["DefaultValue"])
                raise
        if key == "Fn::ImportValue":
            return f"imported-{self._resolve(arg)}"
        if key == "Fn::Base64":
            return base64.b64encode(str(self._resolve(arg)).encode()).decode()
        if key == "Fn::GetAZs":
            region = self.pseudo["AWS::Region"]
            return [f"{region}{s}" for s in "abc"]
        if key == "Fn::Cidr":
            block, count, bits = (self._resolve(x) for x in arg)
            net = ipaddress.ip_network(str(block), strict=False)
            prefix = net.max_prefixlen - int(bits)
            subnets = net.subnets(new_prefix=prefix)
            return [str(next(subnets)) for _ in range(int(count))]
        if key == "Fn::ToJsonString":
            return json.dumps(self._resolve(arg), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self._resolve(arg))
        if key == "Fn::Transform":
            return NO_VALUE
        self._warn(key, f"unsupported intrinsic {key}; using a placeholder")
        return f"unsupported-{key}"
