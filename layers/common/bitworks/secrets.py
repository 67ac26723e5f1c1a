"""Secrets Manager access without boto3 at cold start.

In Lambda the AWS Parameters and Secrets Lambda Extension serves secrets (cached) on localhost;
that costs an HTTP call instead of a ~0.45 s boto3 import. Without the extension (tests, scripts)
boto3 is imported lazily.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=16)
def get_secret_string(secret_id: str) -> str:
    port = os.environ.get("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
    token = os.environ.get("AWS_SESSION_TOKEN")
    if port and token:
        url = f"http://localhost:{port}/secretsmanager/get?secretId={urllib.parse.quote(secret_id, safe='')}"
        request = urllib.request.Request(url, headers={"X-Aws-Parameters-Secrets-Token": token})
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - localhost only
            return str(json.loads(response.read())["SecretString"])
    from bitworks.aws import client

    return str(client("secretsmanager").get_secret_value(SecretId=secret_id)["SecretString"])


def get_secret_json(secret_id: str) -> dict[str, Any]:
    value = json.loads(get_secret_string(secret_id))
    if not isinstance(value, dict):
        raise ValueError("secret is not a JSON object")
    return value
