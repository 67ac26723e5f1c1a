"""The template through SAM CLI's own code: lint, the local API provider, the translator, and a build."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.infra._support import ROOT, SAM_PY, architecture_routes, need_sam, sam


def _sam_python(code: str, timeout: int = 120) -> str:
    need_sam()
    run = subprocess.run(
        [str(SAM_PY), "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", "HOME": str(Path.home())},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_sam_validate_lint_is_clean() -> None:
    run = sam("validate", "--lint", "--template-file", "template.yaml", timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is a valid SAM Template" in run.stdout + run.stderr


def test_sam_api_provider_lists_every_http_route() -> None:
    out = _sam_python(
        "import json\n"
        "from samcli.lib.providers.api_provider import ApiProvider\n"
        "from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider\n"
        "stacks, _ = SamLocalStackProvider.get_stacks('template.yaml')\n"
        "routes = ApiProvider(stacks).routes\n"
        "print(json.dumps([[m, r.path] for r in routes for m in r.methods]))\n"
    )
    served = {tuple(x) for x in json.loads(out.strip().splitlines()[-1])}
    missing = [r for r in architecture_routes() if r not in served]
    assert not missing, missing
    assert ("OPTIONS", "/{proxy+}") in served


def test_translated_template_has_no_dependency_cycle() -> None:
    """CloudFormation rejects cycles at deploy time; cfn-lint misses the ones inside the HttpApi Body."""
    out = _sam_python(
        "import json, yaml\n"
        "from samtranslator.translator.transform import transform\n"
        "from samcli.yamlhelper import yaml_parse\n"
        "t = yaml_parse(open('template.yaml').read())\n"
        "for r in t['Resources'].values():\n"
        "    p = r.get('Properties') or {}\n"
        "    for k in ('CodeUri', 'ContentUri'):\n"
        "        if k in p: p[k] = 's3://bucket/key'\n"
        "class L:\n"
        "    def load(self): return {}\n"
        "print(json.dumps(transform(t, {}, L())))\n"
    )
    resources = json.loads(out.strip().splitlines()[-1])["Resources"]
    import re

    def refs(node: object) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Ref" and isinstance(v, str):
                    found.add(v)
                elif k == "Fn::GetAtt":
                    found.add(v[0] if isinstance(v, list) else str(v).split(".")[0])
                elif k == "Fn::Sub":
                    text = v if isinstance(v, str) else v[0]
                    found |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
                    found |= refs(v[1]) if isinstance(v, list) else set()
                else:
                    found |= refs(v)
        elif isinstance(node, list):
            for v in node:
                found |= refs(v)
        return found

    graph = {}
    for name, res in resources.items():
        deps = refs(res.get("Properties", {})) | refs(res.get("Metadata", {}))
        dep_on = res.get("DependsOn", [])
        deps |= set([dep_on] if isinstance(dep_on, str) else dep_on)
        graph[name] = {d for d in deps if d in resources}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                pytest.fail("cycle: " + " -> ".join([*path[path.index(dep) :], dep]) if dep in path else dep)
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


@pytest.mark.sam_build
def test_sam_build_succeeds(tmp_path: Path) -> None:
    run = sam(
        "build",
        "--build-dir",
        str(tmp_path / "build"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--parallel",
        timeout=170,
    )
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    built = tmp_path / "build"
    layer = next(p for p in built.iterdir() if p.name.startswith("CommonLayer"))
    assert (layer / "python" / "bitworks" / "db.py").exists()
    assert "Amazon Root CA 1" in (layer / "python" / "certifi" / "cacert.pem").read_text()
    assert (built / "MigrateFunction" / "alembic").is_dir()
