"""The local "Lambda service": function environments, sync and async (Event) invocation."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from .template import FunctionSpec, Model
from .workers import FunctionPool, InvokeResult, Logger, new_pycache_dir

_DROP_PREFIXES = ("AWS_", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")


def build_env(spec: FunctionSpec, region: str, aws_url: str, overrides: dict[str, dict[str, str]]) -> dict[str, str]:
    """Template env + --env-vars overrides (declared vars only, as `sam local`) + Lambda's own vars."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    fn_env = dict(spec.environment)
    for source in (overrides.get("Parameters") or {}, overrides.get(spec.name) or {}):
        for k, v in source.items():
            if k in fn_env:
                fn_env[k] = v
    env.update(fn_env)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": datetime.now(UTC).strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": "ASIADEVSERVERLOCAL00",
            "AWS_SECRET_ACCESS_KEY": "devserver-local-secret-access-key",
            "AWS_SESSION_TOKEN": "devserver-local-session-token",
            # No real profile/config may leak in and redirect a client somewhere real.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LAMBDA_RUNTIME_DIR": str(spec.code_dir),
            "TZ": ":UTC",
            "AWS_ENDPOINT_URL_LAMBDA": aws_url,
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI": aws_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


class LambdaService:
    def __init__(
        self,
        model: Model,
        aws_url: str,
        env_overrides: dict[str, dict[str, str]],
        logger: Logger,
        max_workers: int = 8,
        retry_delays: tuple[float, ...] = (60.0, 120.0),
    ) -> None:
        self.model = model
        self.logger = logger
        self.retry_delays = retry_delays or (0.0,)
        self._pycache = pycache = new_pycache_dir()
        self.pools: dict[str, FunctionPool] = {
            name: FunctionPool(spec, build_env(spec, model.region, aws_url, env_overrides), logger, max_workers, pycache)
            for name, spec in model.functions.items()
        }
        self.aliases = dict(model.aliases)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.async_events = {"accepted": 0, "succeeded": 0, "failed": 0, "destinations": 0}

    def lookup(self, name_or_arn: str) -> FunctionPool | None:
        """Accepts a name, a full ARN (optionally qualified) or the partial '123:function:Name' form."""
        name = name_or_arn
        if ":function:" in name:
            name = name.split(":function:", 1)[1].split(":", 1)[0]
        else:
            name = name.split(":", 1)[0]
        return self.pools.get(name) or self.pools.get(self.aliases.get(name, ""))

    async def invoke(self, name: str, payload: bytes, client_context: Any = None) -> InvokeResult:
        pool = self.lookup(name)
        if pool is None:
            raise KeyError(name)
        return await pool.invoke(payload, client_context=client_context)

    def invoke_async(self, pool: FunctionPool, payload: bytes, request_id: str | None = None) -> str:
        """Event invocation: queued, retried per EventInvokeConfig, then sent to a destination."""
        rid = request_id or str(uuid.uuid4())
        self.async_events["accepted"] += 1
        task = asyncio.ensure_future(self._run_async(pool, payload, rid))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return rid

    async def _run_async(self, pool: FunctionPool, payload: bytes, rid: str) -> None:
        spec = pool.spec
        received = time.monotonic()
        attempts = 0
        condition = "RetriesExhausted"
        result: InvokeResult | None = None
        while True:
            attempts += 1
            result = await pool.invoke(payload, request_id=rid)
            if result.ok:
                self.async_events["succeeded"] += 1
                await self._destination(spec, spec.on_success, "Success", rid, attempts, payload, result)
                return
            if attempts > spec.max_retries:
                break
            delay = self.retry_delays[min(attempts - 1, len(self.retry_delays) - 1)]
            if time.monotonic() - received + delay > spec.max_event_age:
                condition = "EventAgeExceeded"
                break
            self.logger.write(f"devserver: async invoke {rid} of {spec.name} failed; retry {attempts} in {delay:g}s")
            await asyncio.sleep(delay)
        self.async_events["failed"] += 1
        self.logger.write(f"devserver: async invoke {rid} of {spec.name} dropped ({condition})")
        await self._destination(spec, spec.on_failure, condition, rid, attempts, payload, result)

    async def _destination(
        self,
        spec: FunctionSpec,
        target: str | None,
        condition: str,
        rid: str,
        attempts: int,
        payload: bytes,
        result: InvokeResult | None,
    ) -> None:
        if not target:
            return
        pool = self.lookup(target)
        if pool is None:
            self.logger.write(f"devserver: destination {target} of {spec.name} is not a local function")
            return
        try:
            request_payload: Any = json.loads(payload) if payload else {}
        except ValueError:
            request_payload = payload.decode("utf-8", "replace")
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if result is not None and not result.ok:
            response_context["functionError"] = "Unhandled"
        try:
            response_payload: Any = json.loads(result.payload) if result and result.payload else None
        except ValueError:
            response_payload = None
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {
                "requestId": rid,
                "functionArn": f"{spec.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": request_payload,
            "responseContext": response_context,
            "responsePayload": response_payload,
        }
        self.async_events["destinations"] += 1
        # Lambda delivers to a Lambda destination as an asynchronous invocation of its own.
        self.invoke_async(pool, json.dumps(record).encode())

    def stats(self) -> dict[str, Any]:
        return {name: pool.stats() for name, pool in self.pools.items()}

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for pool in self.pools.values():
            await pool.stop()
        shutil.rmtree(self._pycache, ignore_errors=True)
