"""Runs schemathesis against the native REST API of a real dmsd.

Starts dmsd on free ports in a temporary directory, creates a queue, a
consumer group and messages through the API, writes a schemathesis
configuration whose path parameters are the real names (deletions get
queues and groups of their own, so that they do not take the others' away),
runs schemathesis against /openapi.json and stops dmsd. The exit status is
schemathesis's: non-zero on any 5xx or answer that breaks the document.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

PROJECT = "0123456789abcdef0123456789abcdef"


def free_addr():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1:%d" % s.getsockname()[1]


def call(base, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def wait_healthy(base, proc, log):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("dmsd exited:\n" + open(log).read())
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit("dmsd did not become healthy within 60 s:\n" + open(log).read())


def seed(base):
    """Creates what the path parameters name and returns their names."""
    parent = "projects/" + PROJECT

    def queue(name):
        return call(base, "POST", "/v1/%s/queues" % parent,
                    {"displayName": name, "deadLetterEnabled": True, "maxConsumeCount": 3})["queue"]["name"]

    def group(queue_name, name):
        return call(base, "POST", "/v1/%s/groups" % queue_name, {"displayName": name})["group"]["name"]

    names = {"project": parent, "queue": queue("fuzzed"), "doomed_queue": queue("deleted")}
    names["group"] = group(names["queue"], "fuzzed")
    names["doomed_group"] = group(names["queue"], "deleted")
    # Messages to receive, so that answers with messages are checked too,
    # and receives come back at once instead of waiting.
    for i in range(20):
        messages = [{"body": "bWVzc2FnZQ==", "attributes": {"n": {"intValue": str(i * 100 + j)}}, "tags": ["t"]} for j in range(100)]
        call(base, "POST", "/v1/%s/messages:send" % names["queue"], {"messages": messages})
    return names


def config(names, examples):
    """The schemathesis.toml: which real name each path parameter gets."""

    def operation(operation_id, **params):
        values = ", ".join('"path.%s" = %s' % (k, json.dumps(v)) for k, v in params.items())
        return '[[operations]]\ninclude-operation-id = "%s"\nparameters = { %s }\n' % (operation_id, values)

    # The document expands resource names into their segments
    # (/v1/projects/{project}/queues/{queue}), so each gets its own value.
    def ids(name):
        parts = name.split("/")
        return dict(zip([p[:-1] for p in parts[0::2]], parts[1::2]))

    q, g = ids(names["queue"]), ids(names["group"])
    project = ids(names["project"])
    ops = [
        operation("QueueService_ListQueues", **project),
        operation("QueueService_CreateQueue", **project),
        operation("QueueService_GetQueue", **q),
        operation("QueueService_DeleteQueue", **ids(names["doomed_queue"])),
        operation("QueueService_AddPartitions", **q),
        operation("QueueService_UpdateQueueLabels", **q),
        operation("QueueService_ListConsumerGroups", **q),
        operation("QueueService_CreateConsumerGroup", **q),
        operation("QueueService_GetConsumerGroup", **g),
        operation("QueueService_DeleteConsumerGroup", **ids(names["doomed_group"])),
        operation("QueueService_GetProjectQuotas", **project),
        # Another project's: random quotas on the fuzzed one would refuse
        # or hold the sends of the other operations.
        operation("QueueService_UpdateProjectQuotas", project="quotas-fuzzed"),
        operation("QueueService_BrowseMessages", **q),
        operation("QueueService_UpdateQueue", **q),
        operation("ProducerService_SendMessages", **q),
        operation("ProducerService_CancelScheduledMessages", **q),
        operation("ProducerService_RescheduleMessage", **q),
        operation("MessageTraceService_GetMessageTrace", **q),
    ]
    for rpc in ["AckDeadLetters", "ReceiveDeadLetters", "ListDeadLetters", "RedriveDeadLetters", "AckMessages",
                "ChangeVisibility", "ReceiveMessages", "SeekConsumerGroup"]:
        ops.append(operation("ConsumerService_" + rpc, **g))
    head = "[generation]\nmax-examples = %d\n\n" % examples
    return head + "\n".join(ops)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dmsd", required=True)
    ap.add_argument("--schemathesis", required=True)
    args, extra = ap.parse_known_args()
    examples = int(os.environ.get("API_FUZZ_EXAMPLES", "100"))
    with tempfile.TemporaryDirectory(prefix="dms-api-fuzz-") as tmp:
        http_addr, log = free_addr(), os.path.join(tmp, "dmsd.log")
        with open(log, "w") as out:
            proc = subprocess.Popen([args.dmsd, "-data-dir", os.path.join(tmp, "data"), "-grpc-addr", free_addr(),
                                     "-http-addr", http_addr, "-kafka.addr", "127.0.0.1:0", "-amqp.addr", "127.0.0.1:0", "-log.level", "warn"],
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            base = "http://" + http_addr
            wait_healthy(base, proc, log)
            names = seed(base)
            toml = os.path.join(tmp, "schemathesis.toml")
            with open(toml, "w") as f:
                f.write(config(names, examples))
            cmd = [args.schemathesis, "--config-file", toml, "run", base + "/openapi.json",
                   "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
                   "--phases", "examples,coverage,fuzzing", "--workers", "1", "--request-timeout", "70",
                   "--suppress-health-check", "filter_too_much,too_slow", "--seed", os.environ.get("API_FUZZ_SEED", "1")] + extra
            print("api-fuzz:", " ".join(cmd[1:]), flush=True)
            rc = subprocess.call(cmd, cwd=tmp)  # hypothesis keeps its database in the working directory
            if rc != 0:
                print("api-fuzz: dmsd log (warnings and errors):\n" + open(log).read()[-20000:], file=sys.stderr)
            return rc
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    sys.exit(main())
