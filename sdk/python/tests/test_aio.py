"""The asyncio client: send, receive, produce, consume and subscribe."""

import asyncio

import pytest

import opendms
import opendms.aio

from conftest import Server, unique


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


@pytest.fixture
def names(client: opendms.Client, queue: str):
    return client.project, queue


def test_send_receive_ack(dmsd: Server, names):
    project, queue = names

    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=project) as c:
            sent = await c.send(queue, [opendms.Message(b"a", attributes={"n": 1}), b"b"])
            assert len(sent) == 2
            msgs = await c.receive(queue, "g", max_messages=10, wait_time=2)
            assert sorted(m.body for m in msgs) == [b"a", b"b"]
            assert all(r.applied for r in await c.ack(queue, "g", msgs))
            assert (await c.group_stats(queue, "g")).consumed == 2
            with pytest.raises(opendms.NotFoundError):
                await c.get_queue("missing")
            assert [q.display_name async for q in c.list_queues(page_size=1)] == [queue]

    run(main())


def test_producer_and_consumer(dmsd: Server, names):
    project, queue = names
    n = 300

    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=project) as c:
            async with c.producer(queue, linger=0.01) as producer:
                futures = [await producer.send(f"m{i}".encode()) for i in range(n)]
                first = await futures[0]
                assert first.message_id
            results = await asyncio.gather(*futures)
            assert len({r.message_id for r in results}) == n
            with pytest.raises(opendms.ClosedError):
                await producer.send(b"late")

            seen: dict[bytes, int] = {}
            done = asyncio.Event()

            async def handler(m: opendms.ReceivedMessage) -> None:
                seen[m.body] = max(seen.get(m.body, 0), m.delivery_count)
                if m.body == b"m7" and m.delivery_count == 1:
                    raise ValueError("fail once")
                if len(seen) == n and seen[b"m7"] == 2:
                    done.set()

            async with c.consumer(queue, "g", handler, concurrency=8, wait_time=1):
                await asyncio.wait_for(done.wait(), 20)
            stats = await c.group_stats(queue, "g")
            assert (stats.consumed, stats.in_flight) == (n, 0)

    run(main())


def test_subscribe(dmsd: Server, names):
    project, queue = names

    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=project) as c:
            await c.send(queue, [f"s{i}".encode() for i in range(10)])
            async with c.subscribe(queue, "g", credits=4, ack_batch_size=2) as sub:
                first = [await sub.get(timeout=5) for _ in range(4)]
                assert all(first)
                assert await sub.get(timeout=0.5) is None  # out of credits
                results = await asyncio.gather(*(sub.ack(m) for m in first))
                assert all(r.applied for r in results)
                rest = []
                async for m in sub:
                    rest.append(m)
                    sub.ack(m)
                    if len(rest) == 6:
                        break
            assert sorted(m.body for m in first + rest) == sorted(f"s{i}".encode() for i in range(10))
            for _ in range(100):
                if (await c.group_stats(queue, "g")).consumed == 10:
                    break
                await asyncio.sleep(0.05)
            assert (await c.group_stats(queue, "g")).consumed == 10

    run(main())


def test_dead_letters_and_seek(dmsd: Server, project: str):
    async def main():
        async with opendms.aio.Client(dmsd.grpc_addr, project=project) as c:
            q = unique("q")
            await c.create_queue(q, dead_letters=True, max_consume_count=1)
            await c.create_group(q, "g")
            await c.send(q, b"x")
            (m,) = await c.receive(q, "g", wait_time=2)
            await c.ack(q, "g", m.fail())
            (dead,) = await c.receive_dead_letters(q, "g", wait_time=2)
            assert dead.dead_letter.failure_count == 1
            await c.ack_dead_letters(q, "g", dead.fail())
            assert [r.redriven for r in await c.redrive_dead_letters(q, "g")] == [True]
            (back,) = await c.receive(q, "g", wait_time=2)
            await c.ack(q, "g", back)
            await c.seek(q, "g", position=opendms.SeekPosition.EARLIEST)
            (again,) = await c.receive(q, "g", wait_time=2)
            assert again.id == m.id

    run(main())
