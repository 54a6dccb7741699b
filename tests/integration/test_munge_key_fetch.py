"""The first-boot MUNGE key fetch as munge-key-fetch.service runs it: a separate process, the key
from the moto server's SSM (SecureString) or Secrets Manager, the source named by a flag or by an
instance tag read from an instance metadata stand-in (IMDSv2: token, then the tag and region)."""

from __future__ import annotations

import getpass
import os
import stat
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

from tests.peers.moto_process import MotoServer

# As munge-key-fetch.service runs it: the environment's python -m the package's module.
FETCH = [sys.executable, "-m", "dataplatform_dask.node.munge_key_fetch"]
REGION = "eu-west-1"
KEY = "k" * 40 + "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("munge_moto") / "moto.log", REGION)
    with server:
        yield server


class Imds(BaseHTTPRequestHandler):
    """IMDSv2 as far as the fetch uses it: a token, then tags/instance/<key> and placement/region."""

    tags: typing.ClassVar[dict[str, str]] = {}
    token = "tok-123"

    def do_PUT(self):
        self._answer(200, self.token) if self.path == "/latest/api/token" else self._answer(404, "")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != self.token:
            return self._answer(401, "")
        if self.path == "/latest/meta-data/placement/region":
            return self._answer(200, REGION)
        prefix = "/latest/meta-data/tags/instance/"
        if self.path.startswith(prefix) and self.path[len(prefix) :] in self.tags:
            return self._answer(200, self.tags[self.path[len(prefix) :]])
        return self._answer(404, "")

    def _answer(self, code, body):
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Imds)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    Imds.tags = {}


@pytest.fixture
def aws(moto: MotoServer) -> dict:
    moto.reset()
    kw = {"endpoint_url": moto.url, "region_name": REGION, "aws_access_key_id": "testing"}
    kw["aws_secret_access_key"] = "testing"
    return {"ssm": boto3.client("ssm", **kw), "secretsmanager": boto3.client("secretsmanager", **kw)}


def fetch(moto: MotoServer, key_file: Path, *args: str, region: bool = True, imds: str = "http://127.0.0.1:9"):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(moto.env)
    env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = imds
    if not region:
        env.pop("AWS_REGION")
        env.pop("AWS_DEFAULT_REGION")
    return subprocess.run(
        [*FETCH, "--key-file", str(key_file), "--wait", "3", "--owner", getpass.getuser(), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_key_from_an_ssm_securestring_is_written_0400_and_never_printed(moto, aws, tmp_path):
    aws["ssm"].put_parameter(Name="/dataplatform/slurm/munge-key", Value=KEY, Type="SecureString")
    key_file = tmp_path / "munge.key"
    done = fetch(moto, key_file, "--source", "ssm:/dataplatform/slurm/munge-key")
    assert done.returncode == 0, done.stderr
    assert key_file.read_text() == KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o400
    assert KEY not in done.stderr + done.stdout
    assert f"wrote {key_file} from ssm:/dataplatform/slurm/munge-key" in done.stderr
    # A second boot finds the key and asks AWS nothing (even with the parameter gone).
    aws["ssm"].delete_parameter(Name="/dataplatform/slurm/munge-key")
    again = fetch(moto, key_file, "--source", "ssm:/dataplatform/slurm/munge-key")
    assert again.returncode == 0
    assert "exists; nothing to fetch" in again.stderr
    assert key_file.read_text() == KEY


def test_key_from_secrets_manager(moto, aws, tmp_path):
    aws["secretsmanager"].create_secret(Name="dataplatform/munge", SecretString=KEY)
    key_file = tmp_path / "munge.key"
    done = fetch(moto, key_file, "--source", "secretsmanager:dataplatform/munge")
    assert done.returncode == 0, done.stderr
    assert key_file.read_text() == KEY


def test_source_from_the_instance_tag_and_region_from_the_metadata(moto, aws, imds, tmp_path):
    aws["ssm"].put_parameter(Name="/prod/munge", Value=KEY, Type="SecureString")
    Imds.tags = {"SlurmMungeKeySource": "ssm:/prod/munge"}
    key_file = tmp_path / "munge.key"
    done = fetch(moto, key_file, "--source-tag", "SlurmMungeKeySource", region=False, imds=imds)
    assert done.returncode == 0, done.stderr
    assert key_file.read_text() == KEY


def test_missing_parameter_fails_at_once_naming_it(moto, aws, tmp_path):
    key_file = tmp_path / "munge.key"
    done = fetch(moto, key_file, "--source", "ssm:/no/such/key")
    assert done.returncode == 1
    assert "read the MUNGE key from ssm:/no/such/key: ParameterNotFound" in done.stderr, done.stderr
    assert "retrying" not in done.stderr
    assert not key_file.exists()


def test_short_key_is_refused(moto, aws, tmp_path):
    aws["ssm"].put_parameter(Name="/short", Value="abc", Type="SecureString")
    key_file = tmp_path / "munge.key"
    done = fetch(moto, key_file, "--source", "ssm:/short")
    assert done.returncode == 1
    assert "is too short (3 characters, at least 32)" in done.stderr
    assert not key_file.exists()


def test_unreadable_tag_is_retried_then_named(moto, aws, imds, tmp_path):
    key_file = tmp_path / "munge.key"
    done = fetch(moto, key_file, "--source-tag", "SlurmMungeKeySource", imds=imds)
    assert done.returncode == 1
    assert "the instance tag SlurmMungeKeySource is not readable" in done.stderr
    assert "retrying in 2 s" in done.stderr
    assert "gave up after 3.0 s" in done.stderr


@pytest.mark.parametrize("source", ["/dataplatform/key", "s3:bucket/key", "ssm:"])
def test_bad_source_is_named(moto, tmp_path, source):
    done = fetch(moto, tmp_path / "munge.key", "--source", source)
    assert done.returncode == 1
    assert f"key source '{source}' is not ssm:PARAMETER or secretsmanager:SECRET_ID" in done.stderr
