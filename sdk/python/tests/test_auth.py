"""The client's token option against a dmsd with authentication on."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest

import opendms
import opendms.aio
from conftest import run_dmsd, unique

PASSWORD = "python-sdk-admin-password"
PROJECT = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def auth_dmsd(tmp_path_factory: pytest.TempPathFactory):
    with run_dmsd(tmp_path_factory.mktemp("dmsd-auth"), ("-auth.enabled",), {"DMS_ADMIN_PASSWORD": PASSWORD}) as server:
        yield server


def keystone_token(server) -> str:
    body = {
        "auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": PASSWORD, "domain": {"name": "Default"}}}},
            "scope": {"project": {"id": PROJECT}},
        }
    }
    req = urllib.request.Request(
        f"http://{server.http_addr}/v3/auth/tokens", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 201
        return resp.headers["X-Subject-Token"]


def test_token_is_sent_and_required(auth_dmsd):
    with opendms.Client(auth_dmsd.grpc_addr, project=PROJECT) as anonymous:
        with pytest.raises(opendms.UnauthenticatedError) as refused:
            anonymous.create_queue(unique("q"))
        assert refused.value.reason == "UNAUTHENTICATED"
    token = keystone_token(auth_dmsd)
    with opendms.Client(auth_dmsd.grpc_addr, project=PROJECT, token=token) as client:
        name = unique("q")
        client.create_queue(name)
        client.create_group(name, "g")
        client.send(name, [b"hello"])
        got = client.receive(name, "g", max_messages=1, wait_time=5)
        assert [m.body for m in got] == [b"hello"]
        with pytest.raises(opendms.PermissionDeniedError) as denied:
            client.with_project("f" * 32).create_queue(unique("q"))
        assert denied.value.reason == "PERMISSION_DENIED"


def test_token_on_the_asyncio_client(auth_dmsd):
    token = keystone_token(auth_dmsd)

    async def main():
        async with opendms.aio.Client(auth_dmsd.grpc_addr, project=PROJECT, token=token) as client:
            name = unique("q")
            await client.create_queue(name)
            assert (await client.get_queue(name)).display_name == name

    asyncio.run(main())
