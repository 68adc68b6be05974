"""Dead letters: receive, ack and redrive."""

import opendms

from conftest import unique


def test_dead_letter_receive_and_redrive(client: opendms.Client):
    queue = unique("q")
    client.create_queue(queue, dead_letters=True, max_consume_count=1)
    client.create_group(queue, "g")
    (sent,) = client.send(queue, opendms.Message(b"poison", tags=["t"]))

    (m,) = client.receive(queue, "g", wait_time=2)
    assert client.ack(queue, "g", m.fail())[0].applied
    assert client.receive(queue, "g", wait_time=0.3) == []

    (dead,) = client.receive_dead_letters(queue, "g", wait_time=2)
    assert dead.id == sent.message_id and dead.body == b"poison"
    assert dead.dead_letter is not None
    assert dead.dead_letter.failure_count == 1
    assert dead.dead_letter.last_failure_reason == "FAILED_BY_CONSUMER"
    assert (dead.dead_letter.source_partition, dead.dead_letter.source_offset) == (sent.partition, sent.offset)
    assert client.group_stats(queue, "g").produced_dead_letters == 1

    # A dead letter in flight is not redriven: give it back first.
    assert client.ack_dead_letters(queue, "g", dead.fail())[0].applied
    results = client.redrive_dead_letters(queue, "g", message_ids=[sent.message_id])
    assert results == [opendms.RedriveResult(sent.message_id, True)]

    (back,) = client.receive(queue, "g", wait_time=2)
    assert back.id == sent.message_id and back.delivery_count == 1 and back.dead_letter is None
    assert client.ack(queue, "g", back)[0].applied
    assert client.receive_dead_letters(queue, "g") == []


def test_acked_dead_letter_is_gone(client: opendms.Client):
    queue = unique("q")
    client.create_queue(queue, dead_letters=True, max_consume_count=1)
    client.create_group(queue, "g")
    client.send(queue, b"x")
    (m,) = client.receive(queue, "g", wait_time=2)
    client.ack(queue, "g", m.fail())
    (dead,) = client.receive_dead_letters(queue, "g", wait_time=2)
    assert client.ack_dead_letters(queue, "g", dead)[0].applied
    assert client.redrive_dead_letters(queue, "g") == []
    assert client.group_stats(queue, "g").available_dead_letters == 0
