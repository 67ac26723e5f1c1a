"""A handler must not import boto3 at cold start (≈0.2-0.45 s), nor pydantic's model machinery
(≈40 ms: bodies are validated by pydantic-core, which `import pydantic` loads anyway)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.template import ROOT, functions

# Functions whose code calls AWS (async invoke, push, delete_connection) may import boto3 lazily,
# but never at module import either: boto3 loads on first use.
PROBE = """
import importlib.util, json, sys
sys.path[:0] = [{code!r}, {layer!r}]
spec = importlib.util.spec_from_file_location("probe_handler", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("boto3", "botocore", "requests", "alembic") or m == "pydantic.main")))
"""


def _handlers():
    for name, props in sorted(functions().items()):
        module = props["Handler"].rsplit(".", 1)[0]
        path = ROOT / props["CodeUri"] / (module.replace(".", "/") + ".py")
        if path.exists():
            yield name, path


@pytest.mark.parametrize(("name", "path"), list(_handlers()), ids=lambda v: v if isinstance(v, str) else "")
def test_handler_imports_without_boto3(name: str, path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://u@localhost/db", "JWT_SECRET": "x" * 32}
    code = PROBE.format(code=str(path.parent), layer=str(ROOT / "layers" / "common"), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    # Powertools imports the bare `botocore` package (<1 ms) for its user-agent hook; any real
    # SDK module (boto3, botocore.session/client/...) is the 0.2-0.45 s we refuse to pay.
    heavy = [m for m in loaded if m.startswith("boto3") or m.startswith("botocore.")]
    assert not heavy, f"{name} imports boto3 at cold start: {heavy[:5]}"
    if name != "MigrateFunction":
        assert not [m for m in loaded if m.startswith("alembic")], f"{name} imports alembic"
    # Bodies are validated by pydantic-core directly (bitworks.bodies): no handler needs the models.
    assert "pydantic.main" not in loaded, f"{name} loads pydantic's model machinery at cold start"
