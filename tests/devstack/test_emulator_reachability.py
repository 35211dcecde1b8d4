"""How clients reach the emulator: HTTP proxy under any endpoint name, or plain requests naming the project."""

from __future__ import annotations

import socket
import time

import pytest
import requests
from aliyun.log import LogClient

from devstack.sls_emulator import EmulatorServer
from devstack.sls_emulator.server import project_from_host


def test_emulator_endpoint_names_do_not_resolve_and_fail_fast():
    started = time.monotonic()
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("some-project.cn-hangzhou.log.emulator", 80)
    assert time.monotonic() - started < 2


def test_emulator_sdk_session_reads_http_proxy_at_request_time(
    sls_emulator: EmulatorServer, sls_proxy_env: str, sls_project: str, monkeypatch: pytest.MonkeyPatch
):
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name)
    client = LogClient(sls_proxy_env, "ak", "secret")  # built while no proxy is configured
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, sls_emulator.proxy_url)
    assert client.get_project(sls_project).projectName == sls_project


def test_emulator_answers_origin_form_requests_naming_the_project_in_host(
    sls_emulator: EmulatorServer, sls_project: str
):
    reply = requests.get(
        f"{sls_emulator.url}/logstores", headers={"Host": f"{sls_project}.cn-hangzhou.log.aliyuncs.com"}, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"count": 0, "total": 0, "logstores": []}


@pytest.mark.parametrize(
    ("host", "project"),
    [
        ("proj.cn-hangzhou.log.emulator", "proj"),
        ("proj.cn-hangzhou-intranet.log.aliyuncs.com:80", "proj"),
        ("cn-hangzhou.log.emulator", ""),
        ("proj.127.0.0.1", "proj"),
        ("127.0.0.1:8090", ""),
        ("localhost:8090", ""),
        ("proj.localhost", "proj"),
        ("[::1]:8090", ""),
    ],
)
def test_emulator_project_is_the_first_label_before_the_endpoint(host: str, project: str):
    assert project_from_host(host) == project
