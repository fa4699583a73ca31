"""The sandbox's HTTP server: persistent connections like a real API server, faults that end them.

Benchmark B5 counts the connections a pooled client needs (one), so the server must keep them;
fault injection needs dropped connections to stay dropped, and a stopped sandbox to be down even
for a client holding a pooled connection.
"""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from reports.sandbox import Sandbox, SandboxConfig
from reports.sandbox.faults import Fault
from reports.sandbox.server import serve_in_thread

KEY = {"x-api-key": "clk_test_serverchecks"}


@pytest.fixture
def running():
    served = serve_in_thread(Sandbox(SandboxConfig(rate_limit_per_minute=100_000)))
    yield served
    served.stop()


def _lab() -> dict[str, object]:
    return {"status": "preliminary", "code": "58410-2", "patientId": "pt_8f2k1m0a4x7q"}


def test_a_pooled_client_makes_a_hundred_requests_on_one_connection(running):
    with httpx.Client(base_url=running.url, headers=KEY) as client:
        for number in range(50):
            created = client.post("/v1/labs", json={**_lab(), "conclusion": f"n{number}"})
            assert created.status_code == 201
            lab_id = created.json()["data"]["id"]
            assert client.get(f"/v1/labs/{lab_id}").json()["data"]["conclusion"] == f"n{number}"
    assert running.connections_accepted == 1


def test_an_unread_request_body_does_not_spill_into_the_next_request(running):
    with httpx.Client(base_url=running.url, headers=KEY) as client:
        # The health route does not read a body; the next request must still parse cleanly.
        client.request("GET", "/health", content=b"x" * 10_000)
        assert client.get("/v1/patients", params={"name": "okafor"}).status_code == 200
    assert running.connections_accepted == 1


@pytest.mark.parametrize("request_line", ["GET /health HTTP/1.0", "GET /health HTTP/1.1"])
def test_the_server_closes_when_the_client_asks(running, request_line):
    host, port = "127.0.0.1", running.port
    with socket.create_connection((host, port), timeout=5) as raw:
        close = "" if request_line.endswith("1.0") else "Connection: close\r\n"
        raw.sendall(f"{request_line}\r\nHost: {host}\r\n{close}\r\n".encode())
        received = b""
        while chunk := raw.recv(65536):  # ends only when the server closes
            received += chunk
    assert received.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize(
    "fault",
    [
        Fault.drop(route="POST /v1/labs", when="after"),
        Fault.connection_reset(route="POST /v1/labs", when="after"),
        Fault.garbage(route="POST /v1/labs", when="after"),
    ],
    ids=["close", "reset", "garbage"],
)
def test_a_dropped_connection_stays_dropped_and_the_next_request_gets_a_new_one(running, fault):
    with httpx.Client(base_url=running.url, headers=KEY) as client:
        assert client.get("/health").status_code == 200
        running.sandbox.faults.push(fault)
        with pytest.raises(httpx.TransportError):
            client.post("/v1/labs", json=_lab())
        assert client.get("/health").status_code == 200
    assert running.connections_accepted == 2
    assert len(running.sandbox.store.created("labs")) == 1  # stored, then the answer was lost


def test_a_slow_drip_response_is_read_whole_on_a_kept_connection(running):
    with httpx.Client(base_url=running.url, headers=KEY) as client:
        plain = client.get("/health").json()
        running.sandbox.faults.push(Fault.drip(0.001, route="GET /health"))
        dripped = client.get("/health")
        assert dripped.status_code == 200
        assert dripped.json().keys() == plain.keys()
        assert client.get("/health").status_code == 200


def test_a_stopped_sandbox_is_down_even_for_a_kept_connection():
    served = serve_in_thread(Sandbox(SandboxConfig()))
    with httpx.Client(base_url=served.url, headers=KEY) as client:
        assert client.get("/health").status_code == 200
        stopper = threading.Thread(target=served.stop)
        stopper.start()
        stopper.join(timeout=10)
        assert not stopper.is_alive()
        with pytest.raises(httpx.TransportError):
            client.get("/health")
