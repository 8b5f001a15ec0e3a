"""The local API as a real HTTP server on 127.0.0.1:0, over the sample template."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from devstack.local_api import LocalApi

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "local_api_sample" / "template.yaml"
AUTH = {"Authorization": "allow alice"}


def stand_in_resources(mp: pytest.MonkeyPatch) -> None:
    """Names for the sample's !Ref targets, unless the local AWS stack set real ones.

    Never overwritten: the session's local API over template.yaml may be running in this
    process and reads the same variables.
    """
    for name, value in {"REGISTRY_TABLE": "sample-registry", "COMMAND_DLQ_URL": "http://127.0.0.1:1/q"}.items():
        if name not in os.environ:
            mp.setenv(name, value)


@pytest.fixture(scope="module")
def api() -> Iterator[LocalApi]:
    with pytest.MonkeyPatch.context() as mp:
        stand_in_resources(mp)
        with LocalApi(SAMPLE, port=0, max_instances=250) as running:
            yield running


def connect(api: LocalApi, timeout: float = 10) -> http.client.HTTPConnection:
    address = urlsplit(api.url)
    assert address.hostname is not None and address.port is not None
    return http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)


def request(
    api: LocalApi, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = connect(api)
    try:
        connection.request(method, path, body=body, headers={**AUTH, **(headers or {})})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_serves_on_loopback_with_the_bound_port(api: LocalApi) -> None:
    """port=0 picks a free port; url names 127.0.0.1 and that port."""
    address = urlsplit(api.url)
    assert address.hostname == "127.0.0.1"
    assert address.port == api.port != 0


def test_get_returns_the_functions_answer(api: LocalApi) -> None:
    """A routed GET reaches the function and its JSON answer comes back with a request id."""
    status, headers, body = request(api, "GET", "/items/42?x=1")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)["event"]
    assert event["pathParameters"] == {"itemId": "42"}
    assert event["requestContext"]["requestId"] == headers["x-amzn-RequestId"]


def test_post_body_is_read_by_content_length(api: LocalApi) -> None:
    """The request body, read by Content-Length, is the event's body."""
    payload = json.dumps({"portId": 1}).encode()
    status, _, body = request(api, "POST", "/items", payload, {"Content-Type": "application/json"})
    assert status == 200
    assert json.loads(body)["event"]["body"] == payload.decode()


def test_chunked_body_is_reassembled(api: LocalApi) -> None:
    """A chunked request body arrives whole."""
    connection = connect(api)
    try:
        connection.request("POST", "/items", body=iter([b'{"a":', b"1}"]), headers=AUTH, encode_chunked=True)
        response = connection.getresponse()
        assert json.loads(response.read())["event"]["body"] == '{"a":1}'
    finally:
        connection.close()


def test_keep_alive_serves_several_requests_on_one_connection(api: LocalApi) -> None:
    """HTTP/1.1: the connection stays open between requests."""
    connection = connect(api)
    try:
        for _ in range(3):
            connection.request("GET", "/items", headers=AUTH)
            response = connection.getresponse()
            assert response.status == 200
            response.read()
    finally:
        connection.close()


def test_head_answers_without_a_body(api: LocalApi) -> None:
    """HEAD goes to an ANY route; the answer has headers only."""
    status, headers, body = request(api, "HEAD", "/files/a.txt")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) > 0


def test_oversized_body_is_413(api: LocalApi) -> None:
    """A body over API Gateway's 10 MB limit is refused before it is read."""
    with socket.create_connection((api.host, api.port), timeout=5) as sock:
        sock.sendall(b"POST /items HTTP/1.1\r\nHost: x\r\nAuthorization: allow a\r\nContent-Length: 20000000\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 413")


def test_gateway_response_over_http(api: LocalApi) -> None:
    """No Authorization: the template's UNAUTHORIZED response, its header included."""
    connection = connect(api)
    try:
        connection.request("GET", "/items")
        response = connection.getresponse()
        assert response.status == 401
        assert response.getheader("WWW-Authenticate") == "Bearer"
        assert json.loads(response.read())["error"] == "unauthorized"
    finally:
        connection.close()


def test_one_log_line_per_request(api: LocalApi, caplog: pytest.LogCaptureFixture) -> None:
    """Method, path, status, duration, function and cold/warm on one line."""
    request(api, "GET", "/open")
    with caplog.at_level(logging.INFO, logger="devstack.local_api"):
        request(api, "GET", "/open")
    lines = [r.getMessage() for r in caplog.records if r.name == "devstack.local_api"]
    assert len(lines) == 1
    method, path, status, duration, function, temperature = lines[0].split()
    assert (method, path, status, function, temperature) == ("GET", "/open", "200", "OtherFunction", "warm")
    assert duration.endswith("ms")


def test_two_hundred_concurrent_requests(api: LocalApi) -> None:
    """200 requests in flight at once all succeed, in parallel, never two in one instance."""
    count, sleep = 200, 1.0
    request(api, "GET", "/items")  # cache the authorizer's answer before the burst
    barrier = threading.Barrier(count)
    results: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        status, _, body = request(api, "GET", f"/items?sleep={sleep}")
        with lock:
            results.append((status, json.loads(body)["module"] if status == 200 else body))

    started = time.monotonic()
    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    # The echo function fails a request that finds its module copy busy, so all-200 means
    # no instance was shared between overlapping requests.
    assert [s for s, _ in results] == [200] * count, [r for r in results if r[0] != 200][:3]
    # Not `== count`: a thread that starts late may reuse an instance already idle again.
    assert len({module for _, module in results}) > count // 2
    # Serialised, 200 sleeps would take 100 s; in parallel, a little over one sleep (the
    # margin is for a loaded CI machine).
    assert elapsed < 30 * sleep


def test_stop_frees_the_port_and_restores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """After stop() nothing listens and the functions' variables are gone from os.environ."""
    stand_in_resources(monkeypatch)
    monkeypatch.delenv("STAGE_NAME", raising=False)
    api = LocalApi(SAMPLE, port=0).start()
    port = api.port
    assert os.environ["STAGE_NAME"] == "test"
    api.stop()
    assert "STAGE_NAME" not in os.environ
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_processes_can_share_the_port_with_reuse_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """GIVEN a local API started with reuse_port WHEN another starts on its port so THEN both serve it,
    AND one started without reuse_port cannot take the port."""
    stand_in_resources(monkeypatch)
    first = LocalApi(SAMPLE, port=0, reuse_port=True).start()
    try:
        with pytest.raises(OSError):
            LocalApi(SAMPLE, port=first.port).start()
        second = LocalApi(SAMPLE, port=first.port, reuse_port=True).start()
        try:
            assert second.port == first.port
            for api in (first, second):
                status, _, _ = request(api, "GET", "/items/7")
                assert status == 200
        finally:
            second.stop()
    finally:
        first.stop()
