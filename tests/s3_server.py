"""A real S3-compatible server for the object-storage tests: moto's server on 127.0.0.1, a free port, one bucket.

It speaks the S3 REST API over HTTP, so everything tunekit, Ray, pyarrow and MLflow (boto3) do
against it is what they do against S3 — only the endpoint differs, given the two ways users give
it: ``AWS_ENDPOINT_URL`` in the environment (:meth:`S3Server.env`), or in the storage URI's query
string (:meth:`S3Server.uri`), which needs nothing in any process's environment.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.mlflow_server import free_port, kill_group

BUCKET = "tunekit-runs"
#: Credentials moto accepts (any are); real ones come from the usual AWS chain.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


class S3Server:
    """``moto_server`` on 127.0.0.1 with the bucket :data:`BUCKET` created through the S3 API."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        moto = Path(sys.executable).with_name("moto_server")
        self.process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                time.sleep(0.3)
        else:
            self.stop()
            raise RuntimeError(f"moto_server did not start within {timeout_s:.0f} s")
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials()).create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        self.process = kill_group(self.process)

    def env(self) -> dict[str, str]:
        """What a user exports to point every AWS client at this server."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint, "AWS_EC2_METADATA_DISABLED": "true"}

    def uri(self, path: str) -> str:
        """``s3://tunekit-runs/<path>`` with the endpoint in its query string (pyarrow's options)."""
        return f"s3://{BUCKET}/{path}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix`` in the bucket, read through the S3 API."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def text(self, key: str) -> str:
        """The object ``key``'s contents, read through the S3 API."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, **_boto_credentials())
        return str(client.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }
