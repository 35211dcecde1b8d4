"""InvokeFunction of the local FC host, called by the unmodified official SDK `alibabacloud-fc20230330`."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from alibabacloud_fc20230330 import models
from alibabacloud_fc20230330.client import Client
from alibabacloud_tea_openapi import models as open_api
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import RuntimeOptions

from devstack.fc.api import FcApiServer
from tests.devstack.fc.fc_support import process_alive, small_function, write_s_yaml
from tests.waiting import wait_for

pytestmark = pytest.mark.slow

SOURCE = """
import os, sys, time
calls = 0
def init(context):
    global calls
    calls = -1000   # the initializer ran, once, before any invocation
def handler(event, context):
    global calls
    calls += 1
    began = time.time()
    print("event", event.decode(), "on", context.function.name)
    if event.startswith(b"fail"):
        raise ValueError("asked to fail: " + event.decode())
    if event.startswith(b"sleep"):
        time.sleep(float(event.split()[1]))
    return {"pid": os.getpid(), "calls": calls, "python": "%d.%d" % sys.version_info[:2],
            "request_id": context.request_id, "key": context.credentials.access_key_id,
            "memory": context.function.memory, "timeout": context.function.timeout, "region": context.region,
            "account_id": context.account_id, "env": os.environ.get("GREETING"), "span": [began, time.time()]}
"""


@pytest.fixture
def api(local_cloud, tmp_path):
    props = small_function(tmp_path / "echo", SOURCE, instanceConcurrency=2, memorySize=256, timeout=3,
                           environmentVariables={"GREETING": "${vars.greeting}"},
                           instanceLifecycleConfig={"initializer": {"handler": "index.init", "timeout": 5}},
                           asyncInvokeConfig={"maxAsyncRetryAttempts": 2})
    local_cloud.deploy(write_s_yaml(tmp_path / "s.yaml", {"echo": props}, {"greeting": "hello"}), {})
    server = FcApiServer(local_cloud.host, local_cloud.secrets).start()
    yield server
    server.stop()


def client(api, key=None, secret=None):
    key = key or next(iter(api.secrets))
    return Client(open_api.Config(access_key_id=key, access_key_secret=secret or api.secrets[key],
                                  endpoint=api.endpoint, protocol="http", region_id="cn-hangzhou",
                                  # The SDK sends through HTTP_PROXY (the SLS emulator here) whatever NO_PROXY
                                  # says; its own proxy setting can name the FC host itself.
                                  http_proxy=f"http://{api.endpoint}"))


def invoke(api, body, invocation_type=None, log_type=None, **keys):
    headers = models.InvokeFunctionHeaders(x_fc_invocation_type=invocation_type, x_fc_log_type=log_type)
    return client(api, **keys).invoke_function_with_options("echo", models.InvokeFunctionRequest(body=body),
                                                            headers, RuntimeOptions())


def test_sync_invocation_gets_fc_context_env_and_its_log_tail(api):
    response = invoke(api, b"hi", log_type="Tail")
    assert response.status_code == 200
    result = json.loads(response.body.read())
    assert result["request_id"] == response.headers["x-fc-request-id"]
    assert (result["python"], result["calls"], result["env"]) == ("3.10", -999, "hello")
    assert (result["memory"], result["timeout"], result["region"]) == (256, 3.0, "cn-hangzhou")
    assert result["key"] == next(iter(api.secrets))
    assert result["account_id"]
    tail = base64.b64decode(response.headers["x-fc-log-result"]).decode()
    assert f"{result['request_id']} [INFO] event hi on echo" in tail


def test_a_function_error_is_surfaced_as_fc_does(api):
    response = invoke(api, b"fail now")
    assert response.status_code == 200
    assert response.headers["x-fc-error-type"] == "UnhandledInvocationError"
    error = json.loads(response.body.read())
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "asked to fail: fail now")


def test_async_is_accepted_with_202_and_retried_as_configured(api, local_cloud):
    response = invoke(api, b"fail async", invocation_type="Async")
    assert response.status_code == 202
    status = local_cloud.host.async_status[response.headers["x-fc-request-id"]]
    wait_for(lambda: status.state == "Failed", 10, "the async retries to be spent")
    assert status.attempts == 3  # the first attempt and maxAsyncRetryAttempts=2 retries
    ok = invoke(api, b"fine", invocation_type="Async")
    done = local_cloud.host.async_status[ok.headers["x-fc-request-id"]]
    wait_for(lambda: done.state == "Succeeded", 10, "the async invocation")
    assert done.attempts == 1


@pytest.mark.parametrize(("keys", "function", "status", "code"), [
    ({}, "missing", 404, "FunctionNotFound"),
    ({"secret": "wrong"}, "echo", 403, "SignatureNotMatch"),
    ({"key": "nobody", "secret": "x"}, "echo", 401, "InvalidAccessKeyId.NotFound"),
])
def test_api_errors_have_fc_codes_and_statuses(api, keys, function, status, code):
    with pytest.raises(ClientException) as caught:
        client(api, **keys).invoke_function(function, models.InvokeFunctionRequest(body=b"x"))
    assert (caught.value.status_code, caught.value.code) == (status, code)


def test_instance_concurrency_is_honoured_and_instances_scale_out(api, local_cloud):
    results = []
    threads = [threading.Thread(target=lambda: results.append(json.loads(invoke(api, b"sleep 1").body.read())))
               for _ in range(6)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # 6 invocations of 1 s, at most 2 at once per instance, at most 4 instances: 2 rounds at worst.
    assert time.monotonic() - started < 4.5
    assert all("pid" in r for r in results), results
    pids = {r["pid"] for r in results}
    assert 3 <= len(pids) <= local_cloud.host.max_instances
    for pid in pids:
        spans = [r["span"] for r in results if r["pid"] == pid]
        at_once = max(sum(b <= t < e for b, e in spans) for t, _ in spans)
        assert at_once <= 2
    assert max(sum(b <= t < e for b, e in (r["span"] for r in results)) for t, _ in
               (r["span"] for r in results)) > 2


def test_an_invocation_past_the_timeout_kills_its_instance(api):
    first = json.loads(invoke(api, b"hi").body.read())
    response = invoke(api, b"sleep 30")
    error = json.loads(response.body.read())
    assert response.headers["x-fc-error-type"] == "UnhandledInvocationError"
    assert error["errorMessage"] == "Function timed out after 3 seconds"
    wait_for(lambda: not process_alive(first["pid"]), 5, "the instance to be gone")
    again = json.loads(invoke(api, b"hi").body.read())
    assert again["pid"] != first["pid"]
    assert again["calls"] == -999  # a new instance, initialized again
