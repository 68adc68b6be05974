"""Streaming subscribe with credits and batched acks."""

import opendms

from conftest import eventually


def test_credits_bound_what_is_delivered(client: opendms.Client, queue: str):
    client.send(queue, [f"m{i}".encode() for i in range(12)])
    with client.subscribe(queue, "g", credits=5, ack_batch_size=3, ack_interval=0.05) as sub:
        first = [sub.get(timeout=5) for _ in range(5)]
        assert all(m is not None for m in first)
        # No credit left: nothing more comes until something is acked.
        assert sub.get(timeout=0.5) is None

        acks = [sub.ack(m) for m in first]
        results = [f.result(timeout=5) for f in acks]
        assert all(r.applied for r in results)

        rest = []
        for m in sub:
            rest.append(m)
            sub.ack(m)
            if len(rest) == 7:
                break
        assert sorted(m.body for m in first + rest) == sorted(f"m{i}".encode() for i in range(12))
    # Closing sent the pending acks and waited for their results.
    eventually(lambda: client.group_stats(queue, "g").consumed == 12, message="all acked")


def test_ack_statuses_and_per_handle_results(client: opendms.Client, queue: str):
    client.send(queue, [b"ok", b"again"])
    with client.subscribe(queue, "g", credits=10) as sub:
        got = {}
        while len(got) < 2:
            m = sub.get(timeout=5)
            got[m.body] = m
        ok = sub.ack(got[b"ok"])
        fail = sub.ack(got[b"again"], opendms.AckStatus.FAIL)
        assert ok.result(timeout=5).applied and fail.result(timeout=5).applied
        redelivered = sub.get(timeout=5)
        assert redelivered.body == b"again" and redelivered.delivery_count == 2
        # A handle acked twice is reported, not raised.
        twice = sub.ack(got[b"ok"]).result(timeout=5)
        assert not twice.applied and twice.reason == opendms.Reason.RECEIPT_HANDLE_EXPIRED
        sub.ack(redelivered)
    try:
        sub.ack(redelivered)
    except opendms.ClosedError:
        pass
    else:
        raise AssertionError("ack after close must raise ClosedError")
    assert list(sub) == []


def test_subscribe_to_a_missing_group_fails(client: opendms.Client, queue: str):
    sub = client.subscribe(queue, "nobody")
    try:
        sub.get(timeout=5)
    except opendms.NotFoundError as e:
        assert e.reason == opendms.Reason.GROUP_NOT_FOUND
    else:
        raise AssertionError("expected NotFoundError")
    finally:
        sub.close()
