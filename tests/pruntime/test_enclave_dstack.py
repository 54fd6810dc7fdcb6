"""The dstack backend against a fake guest agent (HTTP on a Unix socket or a loopback port)."""

from __future__ import annotations

import json
import os
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phala.core.attestation import TdxDcap, report_data
from phala.core.envelope import hkdf_sha256
from phala.pruntime.enclave import EnclaveError, open_enclave
from phala.pruntime.enclave.dstack import DstackEnclave
from phala.pruntime.identity import WorkerIdentity, load_or_create

REPORT = bytes(range(200, 256)) + bytes(8)


class FakeAgent:
    """What the fake answers, and every request it received as (path, JSON body)."""

    def __init__(self) -> None:
        self.quote = os.urandom(4998)
        self.key = os.urandom(32)
        self.echo = True
        self.echo_override: str | None = None
        self.fail_with: int | None = None
        self.requests: list[tuple[str, dict]] = []

    def answer(self, path: str, body: dict) -> tuple[int, dict]:
        self.requests.append((path, body))
        if self.fail_with is not None:
            return self.fail_with, {"error": "boom"}
        if path == "/GetQuote":
            echoed = body["report_data"] if self.echo else ""
            if self.echo_override is not None:
                echoed = self.echo_override
            return 200, {"quote": self.quote.hex(), "event_log": "[]", "report_data": echoed}
        if path == "/GetKey":
            return 200, {"key": self.key.hex(), "signature_chain": []}
        return 404, {"error": f"no method {path}"}


def _handler(agent: FakeAgent):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            status, answer = agent.answer(self.path, body)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:  # quiet; client_address is '' on a Unix socket
            pass

    return Handler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    return thread


@pytest.fixture
def unix_agent(tmp_path):
    agent = FakeAgent()
    path = tmp_path / "dstack.sock"
    server = _UnixHTTPServer(str(path), _handler(agent))
    _serve(server)
    yield agent, str(path)
    server.shutdown()
    server.server_close()


@pytest.fixture
def http_agent():
    agent = FakeAgent()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(agent))
    _serve(server)
    yield agent, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(params=["unix", "http"])
def agent(request):
    return request.getfixturevalue(f"{request.param}_agent")


def test_quote_sends_the_report_data_and_returns_the_agent_quote(agent):
    fake, endpoint = agent
    with open_enclave("dstack", endpoint=endpoint) as enclave:
        assert isinstance(enclave, DstackEnclave) and enclave.kind == "dstack"
        report = enclave.quote(REPORT)
    assert report == TdxDcap(quote=fake.quote, collateral=b"")
    assert fake.requests == [("/GetQuote", {"report_data": REPORT.hex()})]


def test_sealing_key_is_get_key_phala_sealing_through_hkdf(agent):
    fake, endpoint = agent
    enclave = open_enclave("dstack", endpoint=endpoint)
    key = enclave.sealing_key()
    assert key == hkdf_sha256(fake.key, b"phala/pruntime/sealing/dstack/v1", 32)
    assert enclave.sealing_key() == key  # asked once, then cached
    assert fake.requests == [
        ("/GetKey", {"path": "phala/sealing", "purpose": "", "algorithm": "secp256k1"})
    ]
    enclave.close()


def test_registration_with_a_sealed_identity(unix_agent, tmp_path):
    fake, endpoint = unix_agent
    enclave = open_enclave("dstack", endpoint=endpoint, data_dir=tmp_path)
    identity = load_or_create(enclave, tmp_path)
    assert (tmp_path / "identity.sealed").exists()
    info, report = identity.attest(enclave, bytes([5]) * 32, bytes([6]) * 32, 2)
    assert fake.requests[-1] == ("/GetQuote", {"report_data": report_data(info).hex()})
    assert isinstance(report, TdxDcap) and report.quote == fake.quote
    # a restart (new client, same agent key) unseals the same identity
    again = load_or_create(open_enclave("dstack", endpoint=endpoint), tmp_path)
    assert again == identity
    assert isinstance(again, WorkerIdentity)


def test_missing_socket_names_the_path(tmp_path):
    missing = tmp_path / "no" / "dstack.sock"
    with pytest.raises(EnclaveError, match=re.escape(f"socket {missing} is missing")):
        open_enclave("dstack", endpoint=str(missing))


def test_unreachable_http_endpoint_is_an_enclave_error():
    import socket

    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    enclave = open_enclave("dstack", endpoint=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(
        EnclaveError, match=re.escape(f"GetQuote at http://127.0.0.1:{port} failed")
    ):
        enclave.quote(REPORT)


def test_agent_error_status_is_an_enclave_error(unix_agent):
    fake, endpoint = unix_agent
    fake.fail_with = 500
    enclave = open_enclave("dstack", endpoint=endpoint)
    with pytest.raises(EnclaveError, match="GetQuote.*HTTP 500"):
        enclave.quote(REPORT)
    with pytest.raises(EnclaveError, match="GetKey.*HTTP 500"):
        enclave.sealing_key()


def test_empty_quote_is_refused(unix_agent):
    fake, endpoint = unix_agent
    fake.quote = b""
    with pytest.raises(EnclaveError, match="empty quote"):
        open_enclave("dstack", endpoint=endpoint).quote(REPORT)


def test_quote_over_other_report_data_is_refused(unix_agent):
    fake, endpoint = unix_agent
    fake.echo_override = bytes(64).hex()
    with pytest.raises(EnclaveError, match="quoted report data 0000"):
        open_enclave("dstack", endpoint=endpoint).quote(REPORT)


def test_agent_without_report_data_echo_is_accepted(unix_agent):
    fake, endpoint = unix_agent
    fake.echo = False
    assert open_enclave("dstack", endpoint=endpoint).quote(REPORT).quote == fake.quote


def test_short_key_is_refused(unix_agent):
    fake, endpoint = unix_agent
    fake.key = bytes(16)
    with pytest.raises(EnclaveError, match="16-byte key"):
        open_enclave("dstack", endpoint=endpoint).sealing_key()


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_wrong_report_data_length_is_refused_before_calling_the_agent(unix_agent, length):
    fake, endpoint = unix_agent
    with pytest.raises(EnclaveError, match=f"got {length}"):
        open_enclave("dstack", endpoint=endpoint).quote(bytes(length))
    assert fake.requests == []


def test_endpoint_from_the_simulator_variable(http_agent, monkeypatch):
    fake, endpoint = http_agent
    monkeypatch.setenv("DSTACK_SIMULATOR_ENDPOINT", endpoint)
    enclave = open_enclave("dstack")
    assert enclave.endpoint == endpoint
    assert enclave.quote(REPORT).quote == fake.quote


def test_collateral_is_fetched_for_the_quote(unix_agent, tmp_path):
    fake, endpoint = unix_agent
    seen = []
    enclave = open_enclave(
        "dstack", endpoint=endpoint, collateral=lambda q: seen.append(q) or b"{c}"
    )
    assert enclave.quote(REPORT) == TdxDcap(quote=fake.quote, collateral=b"{c}")
    assert seen == [fake.quote]
    assert Path(endpoint).exists()
