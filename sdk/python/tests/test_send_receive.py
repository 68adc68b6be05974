"""Send, receive and ack; filters, broadcast and seek."""

import datetime as dt

import pytest

import opendms

from conftest import drain


def test_send_receive_ack_success(client: opendms.Client, queue: str):
    sent = client.send(
        queue,
        [
            opendms.Message(b"hello", attributes={"s": "eu", "i": -7, "f": 1.5, "b": True}, tags=["new"]),
            "text body",
        ],
    )
    assert len(sent) == 2 and all(r.message_id for r in sent)

    msgs = client.receive(queue, "g", max_messages=10, wait_time=2)
    assert sorted(m.body for m in msgs) == [b"hello", b"text body"]
    hello = next(m for m in msgs if m.body == b"hello")
    assert hello.attributes == {"s": "eu", "i": -7, "f": 1.5, "b": True}
    assert hello.tags == ("new",) and hello.delivery_count == 1
    assert hello.id in {r.message_id for r in sent}
    assert hello.visible_at > dt.datetime.now(dt.timezone.utc)

    results = client.ack(queue, "g", [m.success() for m in msgs])
    assert all(r.applied for r in results)
    # A settled delivery cannot be acked twice: reported per handle.
    again = client.ack(queue, "g", msgs[0])
    assert not again[0].applied and again[0].reason == opendms.Reason.RECEIPT_HANDLE_EXPIRED
    assert client.receive(queue, "g") == []
    assert client.group_stats(queue, "g").consumed == 2


def test_fail_makes_the_message_available_again(client: opendms.Client, queue: str):
    client.send(queue, b"retry me")
    (m,) = client.receive(queue, "g", wait_time=2)
    assert client.ack(queue, "g", m.fail())[0].applied
    (again,) = client.receive(queue, "g", wait_time=2)
    assert again.id == m.id and again.delivery_count == 2


def test_redeliver_is_not_available_at_once(client: opendms.Client, queue: str):
    client.send(queue, b"later")
    (m,) = client.receive(queue, "g", wait_time=2)
    assert client.ack(queue, "g", m.redeliver())[0].applied
    assert client.receive(queue, "g", wait_time=1) == []
    stats = client.group_stats(queue, "g")
    assert stats.consumed == 0 and stats.available == 1


def test_invalid_attribute_is_refused_before_sending(client: opendms.Client, queue: str):
    with pytest.raises(TypeError):
        client.send(queue, opendms.Message(b"x", attributes={"bad": [1, 2]}))
    with pytest.raises(ValueError):
        client.send(queue, opendms.Message(b"x", attributes={"big": 1 << 64}))


def test_tag_filter(client: opendms.Client, queue: str):
    client.send(queue, [opendms.Message(b"red", tags=["red"]), opendms.Message(b"blue", tags=["blue"]), b"none"])
    only_red = opendms.TagFilter(["red"])
    msgs = client.receive(queue, "g", max_messages=10, wait_time=2, tag_filter=only_red)
    assert [m.body for m in msgs] == [b"red"]
    client.ack(queue, "g", msgs)
    assert client.receive(queue, "g", max_messages=10, wait_time=0.5, tag_filter=only_red) == []
    assert client.get_group(queue, "g").tag_filter == only_red
    with pytest.raises(opendms.DMSError) as e:
        client.receive(queue, "g", tag_filter=opendms.TagFilter(["blue"]))
    assert e.value.reason == opendms.Reason.TAG_FILTER_CONFLICT


def test_broadcast_receive(client: opendms.Client, queue: str):
    client.send(queue, [b"a", b"b", b"c"])
    every = opendms.BroadcastOptions(start=opendms.BroadcastStart.EARLIEST, auto_ack=True)
    for consumer in ("c1", "c2"):
        got = []
        for _ in range(10):
            got += client.receive(queue, "g", max_messages=10, wait_time=0.5, consumer_id=consumer, broadcast=every)
            if len(got) >= 3:
                break
        assert sorted(m.body for m in got) == [b"a", b"b", b"c"], consumer
    with pytest.raises(opendms.DMSError) as e:
        client.receive(queue, "g", broadcast=every)
    assert e.value.reason == opendms.Reason.CONSUMER_ID_REQUIRED


def test_seek_to_earliest_redelivers_acked_messages(client: opendms.Client, queue: str):
    client.send(queue, [b"1", b"2", b"3"])
    assert len(drain(client, queue, expect=3)) == 3
    assert client.receive(queue, "g") == []

    positions = client.seek(queue, "g", position=opendms.SeekPosition.EARLIEST)
    assert set(positions) == {0, 1, 2} and all(o == 0 for o in positions.values())
    again = drain(client, queue, expect=3)
    assert sorted(m.body for m in again) == [b"1", b"2", b"3"]

    client.seek(queue, "g", position=opendms.SeekPosition.LATEST)
    assert client.receive(queue, "g", wait_time=0.3) == []
    client.seek(queue, "g", time=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    assert len(drain(client, queue, expect=3)) == 3
    with pytest.raises(ValueError):
        client.seek(queue, "g")


def test_idempotence_key_makes_a_retry_store_once(client: opendms.Client, queue: str):
    batch = [b"once-1", b"once-2"]
    first = client.send(queue, batch, idempotence_key="producer-a-1")
    retry = client.send(queue, batch, idempotence_key="producer-a-1")
    assert retry == first
    other = client.send(queue, batch, idempotence_key="producer-a-2")
    assert {r.message_id for r in other}.isdisjoint(r.message_id for r in first)
    assert client.group_stats(queue, "g").produced == 4
