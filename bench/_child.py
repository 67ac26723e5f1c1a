"""Child process of the cold-init bench: a fresh interpreter that imports one thing and reports.

    python bench/_child.py floor
    python bench/_child.py handler CODEURI MODULE [FUNC EVENT_JSON_FILE]

Mirrors the Lambda runtime: the layer directory (/opt/python) and the function's CodeUri
(/var/task, first) on sys.path, then `import MODULE`. Prints one line: BENCH {json}.
"""

import sys
import time

T_START = time.perf_counter()


def main() -> None:
    import json
    import os

    blocked = tuple(b for b in os.environ.get("BENCH_BLOCK", "").split(",") if b)
    if blocked:
        # Packages of the dev venv that the Lambda layer does not ship (layers/common/requirements.txt):
        # e.g. PyJWT imports cryptography when it is installed, and the layer does not install it.
        import importlib.abc

        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
                if name.split(".")[0] in blocked:
                    raise ModuleNotFoundError(f"No module named {name!r} (not in the Lambda layer)", name=name)
                return None

        sys.meta_path.insert(0, Block())
    layer = os.environ["BENCH_LAYER"]
    sys.path.insert(0, layer)
    out: dict = {}
    if sys.argv[1] == "floor":
        t0 = time.perf_counter()
        import jwt  # noqa: F401
        import pg8000  # noqa: F401
        import pydantic  # noqa: F401
        import sqlalchemy.orm  # noqa: F401
        from aws_lambda_powertools.event_handler import APIGatewayHttpResolver  # noqa: F401

        out["import_ms"] = (time.perf_counter() - t0) * 1000
    else:
        code_uri, module_name = sys.argv[2], sys.argv[3]
        sys.path.insert(0, code_uri)
        import importlib

        t0 = time.perf_counter()
        module = importlib.import_module(module_name)
        out["import_ms"] = (time.perf_counter() - t0) * 1000
        out["boto3_at_import"] = "boto3" in sys.modules
        if len(sys.argv) > 5:
            func = getattr(module, sys.argv[4])
            with open(sys.argv[5]) as f:
                event = json.load(f)

            class Ctx:
                function_name = module_name
                aws_request_id = "bench"
                invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
                memory_limit_in_mb = 256

                @staticmethod
                def get_remaining_time_in_millis() -> int:
                    return 10_000

            t1 = time.perf_counter()
            response = func(event, Ctx())
            out["first_invoke_ms"] = (time.perf_counter() - t1) * 1000
            out["status"] = response.get("statusCode") if isinstance(response, dict) else None
            out["boto3_after_invoke"] = "boto3" in sys.modules
    out["modules"] = len(sys.modules)
    out["since_start_ms"] = (time.perf_counter() - T_START) * 1000
    sys.stdout.write("BENCH " + json.dumps(out) + "\n")
    sys.stdout.flush()


main()
