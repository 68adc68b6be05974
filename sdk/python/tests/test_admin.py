"""Queues and consumer groups: the admin round trip and typed errors."""

import datetime as dt

import grpc
import pytest

import opendms
from opendms._gen.dms.v1 import error_reason_pb2, message_pb2, queue_pb2

from conftest import unique


def test_queue_and_group_round_trip(client: opendms.Client):
    name = unique("q")
    q = client.create_queue(
        name,
        description="orders of the shop",
        mode=opendms.QueueMode.NORMAL,
        partitions=2,
        retention=dt.timedelta(hours=1),
        dead_letters=True,
        max_consume_count=5,
    )
    assert q.display_name == name and q.id and q.name == f"projects/{client.project}/queues/{q.id}"
    assert (q.mode, q.partitions, q.retention) == (opendms.QueueMode.NORMAL, 2, dt.timedelta(hours=1))
    assert q.dead_letters and q.max_consume_count == 5 and q.description == "orders of the shop"
    assert q.create_time is not None and q.create_time.tzinfo is not None
    assert q.max_message_bytes > 0

    # By display name and by id.
    assert client.get_queue(name).id == q.id
    assert client.get_queue(q.id).display_name == name

    g = client.create_group(name, "billing")
    assert g.display_name == "billing" and g.id.startswith("g-")
    assert client.get_group(q.id, g.id).display_name == "billing"
    assert [x.display_name for x in client.list_groups(name)] == ["billing"]

    client.send(name, [b"one", b"two"])
    stats = client.group_stats(name, "billing")
    assert (stats.produced, stats.available, stats.consumed) == (2, 2, 0)
    assert client.get_queue(name).group_count == 1

    client.delete_group(name, "billing")
    assert client.list_groups(name) == []
    client.delete_queue(name)
    with pytest.raises(opendms.NotFoundError) as e:
        client.get_queue(name)
    assert e.value.reason == opendms.Reason.QUEUE_NOT_FOUND


def test_list_queues_pages(client: opendms.Client):
    names = [unique(f"q{i}") for i in range(3)]
    for n in names:
        client.create_queue(n)
    page = client.list_queues_page(page_size=2)
    assert len(page.queues) == 2 and page.next_page_token and page.total_size == 3
    rest = client.list_queues_page(page_size=2, page_token=page.next_page_token)
    assert len(rest.queues) == 1 and not rest.next_page_token
    # The iterator fetches page by page, oldest first.
    assert [q.display_name for q in client.list_queues(page_size=1)] == names


def test_typed_errors(client: opendms.Client, queue: str):
    with pytest.raises(opendms.AlreadyExistsError) as e:
        client.create_queue(queue)
    err = e.value
    assert isinstance(err, opendms.DMSError)
    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert err.reason == opendms.Reason.QUEUE_ALREADY_EXISTS == "QUEUE_ALREADY_EXISTS"
    assert err.message and "QUEUE_ALREADY_EXISTS" in str(err)
    assert opendms.reason_of(err) == "QUEUE_ALREADY_EXISTS" and not opendms.is_retryable(err)

    with pytest.raises(opendms.InvalidArgumentError) as e:
        client.create_queue("not a valid name!")
    assert e.value.reason == opendms.Reason.QUEUE_NAME_INVALID

    with pytest.raises(opendms.NotFoundError) as e:
        client.receive(queue, "nobody")
    assert e.value.reason == opendms.Reason.GROUP_NOT_FOUND

    with pytest.raises(opendms.FailedPreconditionError) as e:
        client.receive_dead_letters(queue, "g")
    assert e.value.reason == opendms.Reason.DEAD_LETTERS_DISABLED


def test_unreachable_server_is_unavailable():
    with opendms.Client("127.0.0.1:1", project="p", timeout=5) as c:
        with pytest.raises(opendms.UnavailableError) as e:
            c.get_queue("q")
    assert e.value.retryable and e.value.reason == ""


def test_enums_match_the_protos():
    # The hand-written enums and reasons must follow the generated ones.
    reasons = {n.removeprefix("ERROR_REASON_") for n in error_reason_pb2.ErrorReason.keys()} - {"UNSPECIFIED"}
    assert reasons == {r.value for r in opendms.Reason}
    pairs = [
        (opendms.QueueMode, queue_pb2.QueueMode, "QUEUE_MODE_"),
        (opendms.AckStatus, message_pb2.AckStatus, "ACK_STATUS_"),
        (opendms.TagMatch, message_pb2.TagMatch, "TAG_MATCH_"),
        (opendms.BroadcastStart, message_pb2.BroadcastStart, "BROADCAST_START_"),
        (opendms.SeekPosition, message_pb2.SeekPosition, "SEEK_POSITION_"),
    ]
    for ours, theirs, prefix in pairs:
        generated = {k.removeprefix(prefix): v for k, v in theirs.items() if k != prefix + "UNSPECIFIED"}
        mine = {m.name: m.value for m in ours if m.name != "UNSPECIFIED"}
        assert mine == generated, ours
