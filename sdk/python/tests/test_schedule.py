"""Scheduled messages: sent with a delay or a deliver time, cancelled and
rescheduled, with the sync and the asyncio client."""

import asyncio
import datetime as dt

import opendms
import opendms.aio

from conftest import Server, drain


def test_delay_cancel_and_reschedule(client: opendms.Client, queue: str):
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)
    sent = client.send(
        queue,
        [
            opendms.Message(b"cancelled", delay=3600),
            opendms.Message(b"rescheduled", deliver_time=later),
            opendms.Message(b"now"),
        ],
    )
    cancelled, rescheduled, now = sent
    assert cancelled.schedule_id and rescheduled.schedule_id and not now.schedule_id
    assert cancelled.deliver_time > dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=59)
    assert abs((rescheduled.deliver_time - later).total_seconds()) < 1
    assert [m.body for m in drain(client, queue, expect=1)] == [b"now"]
    assert client.get_queue(queue).scheduled_message_count == 2

    (done,) = client.cancel_scheduled_messages(queue, [cancelled.schedule_id])
    assert done.cancelled and done.schedule_id == cancelled.schedule_id
    again, bad = client.cancel_scheduled_messages(queue, [cancelled.schedule_id, "not-an-id"])
    assert not again.cancelled and again.reason == "SCHEDULE_NOT_FOUND" and again.message
    assert not bad.cancelled and bad.reason == "SCHEDULE_ID_INVALID"

    moved = client.reschedule_message(queue, rescheduled.schedule_id)  # neither: released now
    assert moved.message_id == rescheduled.message_id and moved.schedule_id != rescheduled.schedule_id
    assert [m.body for m in drain(client, queue, expect=1)] == [b"rescheduled"]
    with_old_id = client.cancel_scheduled_messages(queue, [rescheduled.schedule_id])
    assert not with_old_id[0].cancelled


def test_aio_cancel_and_reschedule(dmsd: Server, client: opendms.Client, queue: str):
    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=client.project) as c:
            a, b = await c.send(queue, [opendms.Message(b"a", delay=dt.timedelta(hours=1)), opendms.Message(b"b", delay=3600)])
            (r,) = await c.cancel_scheduled_messages(queue, [a.schedule_id])
            assert r.cancelled and r.schedule_id == a.schedule_id
            at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
            moved = await c.reschedule_message(queue, b.schedule_id, deliver_time=at)
            assert abs((moved.deliver_time - at).total_seconds()) < 1
            moved = await c.reschedule_message(queue, moved.schedule_id, delay=0)
            return moved

    moved = asyncio.run(asyncio.wait_for(main(), 30))
    assert [m.body for m in drain(client, queue, expect=1)] == [b"b"]
    assert moved.message_id
