"""DMS v1.0 REST calls made the way existing clients make them, against a
dmsd with authentication on; prints one JSON object per call (name, HTTP
status, body) for the Go test to check.

  clients.py aksk HOST PROJECT AK SK      requests signed by huaweicloudsdkcore's Signer
  clients.py keystone HOST PROJECT PASSWORD  keystoneauth1 v3.Password, the catalog's dms endpoint
"""

import datetime
import json
import sys

import requests


def emit(name, status, body):
    print(json.dumps({"name": name, "status": status, "body": body}, separators=(",", ":")), flush=True)


def body_of(resp):
    try:
        return resp.json()
    except ValueError:
        return resp.text


def aksk(host, project, ak, sk):
    from huaweicloudsdkcore.auth.credentials import BasicCredentials
    from huaweicloudsdkcore.sdk_request import SdkRequest
    from huaweicloudsdkcore.signer.signer import Signer

    def call(name, method, path, query=None, body=None, secret=sk, date=None):
        headers = {"Content-Type": "application/json", "X-Project-Id": project}
        if date is not None:
            headers["X-Sdk-Date"] = date.strftime("%Y%m%dT%H%M%SZ")
        data = json.dumps(body).encode() if body is not None else b""
        req = SdkRequest(
            method=method, schema="http", host=host, resource_path=path,
            query_params=sorted((query or {}).items()), header_params=headers, body=data,
        )
        Signer(BasicCredentials(ak, secret)).sign(req)
        resp = requests.request(method, "http://" + host + req.uri, headers=req.header_params, data=data, timeout=30)
        emit(name, resp.status_code, body_of(resp))
        return body_of(resp)

    base = "/v1.0/" + project + "/queues"
    q = call("create_queue", "POST", base, body={"name": "hw-orders", "description": "signed"})
    qid = q.get("id", "none") if isinstance(q, dict) else "none"
    call("list_queues", "GET", base, query={"include_deadletter": "true"})
    g = call("create_group", "POST", base + "/" + qid + "/groups", body={"groups": [{"name": "billing"}]})
    gid = g["groups"][0]["id"] if isinstance(g, dict) and g.get("groups") else "none"
    call("send", "POST", base + "/" + qid + "/messages", body={"messages": [{"body": {"order": 42}, "attributes": {"region": "eu"}}]})
    got = call("consume", "GET", base + "/" + qid + "/groups/" + gid + "/messages", query={"max_msgs": "10", "time_wait": "3"})
    handlers = [m["handler"] for m in got] if isinstance(got, list) else []
    call("ack", "POST", base + "/" + qid + "/groups/" + gid + "/ack", body={"message": [{"handler": h, "status": "success"} for h in handlers]})
    call("wrong_sk", "GET", base, secret=sk + "x")
    call("stale_date", "GET", base, date=datetime.datetime.utcnow() - datetime.timedelta(minutes=20))


def keystone(host, project, password):
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(
        auth_url="http://" + host + "/v3", username="admin", password=password,
        user_domain_name="Default", project_id=project,
    )
    sess = session.Session(auth=auth)
    emit("token", 200, {"token_set": bool(sess.get_token())})
    endpoint = sess.get_endpoint(service_type="dms", interface="public")
    emit("endpoint", 200, {"url": endpoint})
    resp = sess.post(endpoint + "/queues", json={"name": "ks-orders"}, raise_exc=False)
    emit("create_queue", resp.status_code, body_of(resp))
    resp = sess.get(endpoint + "/queues", raise_exc=False)
    emit("list_queues", resp.status_code, body_of(resp))
    other = endpoint.replace(project, "f" * 32)
    resp = sess.get(other + "/queues", raise_exc=False)
    emit("other_project", resp.status_code, body_of(resp))


if __name__ == "__main__":
    if sys.argv[1] == "aksk":
        aksk(*sys.argv[2:6])
    else:
        keystone(*sys.argv[2:5])
