"""Runs a real dmsd for the tests: built from this repository's services
module (``go build ./cmd/dmsd``) or taken from ``DMS_TEST_DMSD``, started on
free ports in a temporary directory for the whole session and killed at the
end. No server is mocked."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import opendms

REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Server:
    grpc_addr: str
    http_addr: str


def _free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _die_with_parent() -> None:
    # Linux: the server is killed if the test process dies without cleaning up.
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _binary(tmp: Path) -> str:
    binary = os.environ.get("DMS_TEST_DMSD")
    if binary:
        return binary
    binary = str(tmp / "dmsd")
    build = subprocess.run(
        ["go", "build", "-o", binary, "./cmd/dmsd"],
        cwd=REPO / "services",
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"building dmsd failed:\n{build.stdout}{build.stderr}", pytrace=False)
    return binary


@contextlib.contextmanager
def run_dmsd(tmp: Path, extra: tuple[str, ...] = (), env: dict[str, str] | None = None):
    """Runs a dmsd in tmp until the block ends; yields its Server."""
    binary = _binary(tmp)
    server = Server(_free_addr(), _free_addr())
    log_path = tmp / "dmsd.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                "-data-dir", str(tmp / "data"),
                "-grpc-addr", server.grpc_addr,
                "-http-addr", server.http_addr,
                "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0",
                "-log.level", "warn",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            env={**os.environ, **(env or {})},
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://{server.http_addr}/healthz", timeout=1) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None:
                pytest.fail(f"dmsd exited with {proc.returncode}:\n{log_path.read_text()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"dmsd did not become healthy within 60 s:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.02)
        yield server
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def dmsd(tmp_path_factory: pytest.TempPathFactory) -> Server:
    with run_dmsd(tmp_path_factory.mktemp("dmsd")) as server:
        yield server


def unique(prefix: str) -> str:
    return prefix + secrets.token_hex(6)


@pytest.fixture
def project() -> str:
    """A project of its own per test: tests neither see each other's queues
    nor share the per-project queue quota."""
    return unique("p")


@pytest.fixture
def client(dmsd: Server, project: str):
    with opendms.Client(dmsd.grpc_addr, project=project) as c:
        yield c


@pytest.fixture
def queue(client: opendms.Client) -> str:
    """A NORMAL queue with a group "g"; its display name."""
    name = unique("q")
    client.create_queue(name)
    client.create_group(name, "g")
    return name


def eventually(cond, timeout: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not met within {timeout}s")
        time.sleep(0.01)


def drain(client: opendms.Client, queue: str, group: str = "g", expect: int | None = None, timeout: float = 10.0) -> list:
    """Receives and acks until ``expect`` messages came (or one empty
    receive when expect is None); returns them."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = client.receive(queue, group, max_messages=1000, wait_time=0.5)
        if msgs:
            client.ack(queue, group, msgs)
            got += msgs
        if expect is None and not msgs:
            break
        if expect is not None and len(got) >= expect:
            break
    return got


def pytest_report_header(config) -> str:
    # Shows that the tests run against the installed package, not src/.
    return f"opendms {opendms.__version__} from {Path(opendms.__file__).parent}"
