#!/usr/bin/env python3
"""Throughput of the batching producer: 1 KiB messages, msgs/s.

Sends --messages messages of --size bytes from --threads threads through one
opendms.Producer (default settings: 5 ms linger, batches of up to 1000
messages / 8 MiB, 4 calls in flight) and reports the rate from the first
send until every future is settled (producer closed). Against --target, or,
without it, against a dmsd it starts on free local ports in a temporary
directory (the binary from --dmsd or DMS_TEST_DMSD, else built with
``go build ./cmd/dmsd`` in services/).

    sdk/python/.venv/bin/python sdk/python/scripts/bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import opendms

REPO = Path(__file__).resolve().parents[3]


def free_addr() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@contextlib.contextmanager
def local_dmsd(binary: str | None):
    with tempfile.TemporaryDirectory(prefix="dms-bench-") as tmp:
        if not binary:
            binary = os.path.join(tmp, "dmsd")
            subprocess.run(["go", "build", "-o", binary, "./cmd/dmsd"], cwd=REPO / "services", check=True)
        grpc_addr, http_addr = free_addr(), free_addr()
        with open(os.path.join(tmp, "dmsd.log"), "wb") as log:
            proc = subprocess.Popen(
                [binary, "-data-dir", os.path.join(tmp, "data"), "-grpc-addr", grpc_addr, "-http-addr", http_addr, "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0", "-log.level", "warn"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://{http_addr}/healthz", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("dmsd did not start")
                time.sleep(0.05)
            yield grpc_addr
        finally:
            proc.kill()
            proc.wait()


def run(target: str, messages: int, size: int, threads: int, in_flight: int) -> None:
    with opendms.Client(target, project="bench" + secrets.token_hex(4)) as client:
        queue = "bench" + secrets.token_hex(4)
        client.create_queue(queue)
        body = os.urandom(size)
        msg = opendms.Message(body)
        per_thread = messages // threads
        producer = client.producer(queue, max_in_flight=in_flight)
        failed = []

        def produce() -> None:
            futures = [producer.send(msg) for _ in range(per_thread)]
            failed.extend(f for f in futures if f.exception() is not None)

        workers = [threading.Thread(target=produce) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        producer.close()
        elapsed = time.perf_counter() - start
        total = per_thread * threads
        stored = client.get_queue(queue).message_count
        print(
            f"{total} messages of {size} B from {threads} threads in {elapsed:.2f} s: "
            f"{total / elapsed:,.0f} msgs/s, {total * size / elapsed / (1 << 20):.1f} MiB/s "
            f"(failed {len(failed)}, stored {stored})"
        )


def main() -> None:
    p = argparse.ArgumentParser(description="Batching producer throughput.")
    p.add_argument("--target", help="gRPC address of a running dmsd (default: start one)")
    p.add_argument("--dmsd", default=os.environ.get("DMS_TEST_DMSD"), help="dmsd binary to start")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--in-flight", type=int, default=4)
    args = p.parse_args()
    if args.target:
        run(args.target, args.messages, args.size, args.threads, args.in_flight)
        return
    with local_dmsd(args.dmsd) as target:
        run(target, args.messages, args.size, args.threads, args.in_flight)


if __name__ == "__main__":
    main()
