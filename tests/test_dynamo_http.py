"""The DynamoDB transport (shared.stores.dynamo_http, decision 0105) over real sockets: a local server speaks
HTTP/1.1, or gets it wrong on purpose, one scripted step per request; the transport keeps connections alive,
hides the keep-alive race, reads chunked and length-delimited bodies, raises botocore's exceptions for what it
cannot hide (so that the client's retry handler retries them), and checks TLS certificates as the client's
`verify` or AWS_CA_BUNDLE says."""

from __future__ import annotations

import contextlib
import datetime
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared.stores import dynamo_http
from shared.stores.dynamo import Table
from shared.stores.dynamo_client import JsonClient
from shared.stores.dynamo_http import Transport, _context

ITEM = {"Item": {"pk": {"S": "p"}}}

# What the server does with one request: given the connection, the request's head and body, it answers (or not);
# it returns whether to keep the connection open for the next request.
Step = Callable[[socket.socket, bytes, bytes], bool]


def _answer(body: bytes, status: int = 200, extra: str = "", connection: str = "") -> bytes:
    head = (
        f"HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: r-1\r\n"
        f"x-amz-crc32: {zlib.crc32(body)}\r\nContent-Length: {len(body)}\r\n{extra}"
    )
    if connection:
        head += f"Connection: {connection}\r\n"
    return head.encode() + b"\r\n" + body


def answer(document: Any = ITEM, status: int = 200) -> Step:
    def step(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(_answer(json.dumps(document).encode(), status))
        return True

    return step


def drop(sock: socket.socket, head: bytes, body: bytes) -> bool:
    """Reads the request, then closes the connection without an answer."""
    return False


def echo(sock: socket.socket, head: bytes, body: bytes) -> bool:
    """Answers with the request's own body: each answer is its own request's."""
    sock.sendall(_answer(body))
    return True


class Server:
    """A threaded HTTP/1.1 server on the loopback that runs `script`'s steps, one per request (then `default`),
    and keeps what it saw: connections accepted, requests' heads and bodies, the TLS server name asked for."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.script: list[Step] = []
        self.default: Step = answer()
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []
        self.connections = 0
        self.server_names: list[str | None] = []
        self.handshake_failures = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._context = context
        if context is not None:
            context.sni_callback = self._named
        self._open: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _named(self, _sock: Any, name: str | None, _context: Any) -> None:
        self.server_names.append(name)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self._context else 'http'}://{host}:{self.port}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _next(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _serve(self, sock: socket.socket) -> None:
        if self._context is not None:
            try:
                sock = self._context.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                self.handshake_failures += 1
                sock.close()
                return
        self._open.append(sock)
        self.connections += 1
        buffered = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffered:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffered += data
                head, _, buffered = buffered.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffered) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffered += data
                body, buffered = buffered[:length], buffered[length:]
                self.heads.append(head)
                self.bodies.append(body)
                if not self._next()(sock, head, body):
                    return
        except OSError:
            return
        finally:
            sock.close()

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.stop()


def _transport(url: str, **options: Any) -> Transport:
    host = url.split("://", 1)[1]
    return Transport(url, host, **options)


def _post(transport: Transport, body: bytes = b"{}") -> Any:
    return transport.post("/", [("X-Amz-Target", "DynamoDB_20120810.GetItem")], body)


def _client(url: str, attempts: int = 3, **config: Any) -> Any:
    session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1")
    retries: Any = {"mode": "standard", "total_max_attempts": attempts}
    return session.client("dynamodb", endpoint_url=url, config=Config(retries=retries, **config))


def test_calls_share_one_kept_alive_connection_and_the_request_is_written_whole(server: Server) -> None:
    transport = _transport(server.url())
    answers = [_post(transport, json.dumps({"n": n}).encode()) for n in range(5)]
    assert server.connections == 1
    assert [json.loads(body) for body in server.bodies] == [{"n": n} for n in range(5)]
    assert all(answer.status == 200 and json.loads(answer.body) == ITEM for answer in answers)
    assert answers[0].headers["X-Amzn-RequestId"] == answers[0].headers.get("x-amzn-requestid") == "r-1"
    assert "Content-Length" in answers[0].headers
    lines = server.heads[0].decode().split("\r\n")
    assert lines[0] == "POST / HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{server.port}"
    assert "X-Amz-Target: DynamoDB_20120810.GetItem" in lines
    assert f"Content-Length: {len(server.bodies[0])}" in lines


def test_a_large_body_is_sent_whole(server: Server) -> None:
    server.default = echo
    body = json.dumps({"big": "x" * 400_000}).encode()
    assert _post(_transport(server.url()), body).body == body


def test_an_idle_connection_the_server_closed_is_replaced_unseen(server: Server) -> None:
    def answer_then_close(sock: socket.socket, head: bytes, body: bytes) -> bool:
        answer()(sock, head, body)
        return False  # closed without a `Connection: close`, as a server closes an idle connection

    server.script = [answer_then_close]
    transport = _transport(server.url())
    _post(transport)
    assert _post(transport).status == 200
    assert server.connections == 2
    assert len(server.bodies) == 2  # the closed one noticed before a request was written to it


def test_a_reused_connection_closed_as_the_request_came_is_retried_once_unseen(server: Server) -> None:
    """The keep-alive race: the server closed the connection as the request went out, having read it or not."""
    transport = _transport(server.url())
    _post(transport)
    server.script = [drop]  # read, then closed without an answer: open until then
    assert _post(transport).status == 200
    assert server.connections == 2
    assert len(server.bodies) == 3


def test_a_new_connection_closed_without_an_answer_is_botocores_error_which_it_retries(server: Server) -> None:
    server.script = [drop]
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        _post(_transport(server.url()))
    server.script = [drop]
    answered = Table(_client(server.url()), "t").get_item(Key={"pk": "p"})
    assert answered["ResponseMetadata"]["RetryAttempts"] == 1
    assert answered["Item"] == {"pk": "p"}


def test_a_server_error_is_answered_and_retried_by_the_clients_handler(server: Server) -> None:
    server.script = [answer({"message": "internal"}, status=500)]
    answered = Table(_client(server.url()), "t").get_item(Key={"pk": "p"})
    assert answered["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(server.bodies) == 2
    assert server.connections == 1  # a 500 with a length is no reason to drop the connection


def test_a_read_timeout_is_botocores_and_retried(server: Server) -> None:
    silent = threading.Event()

    def never_answer(sock: socket.socket, head: bytes, body: bytes) -> bool:
        silent.wait(10)
        return False

    server.script = [never_answer, never_answer]
    transport = _transport(server.url(), read_timeout=0.2)
    try:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            _post(transport)
        assert transport._idle == []  # a connection whose answer may still come is not used again
        client = _client(server.url(), attempts=2, read_timeout=0.2)
        assert Table(client, "t").get_item(Key={"pk": "p"})["ResponseMetadata"]["RetryAttempts"] == 1
    finally:
        silent.set()


def test_a_chunked_body_is_read_across_reads_and_the_connection_kept(server: Server) -> None:
    document = json.dumps({"Item": {"pk": {"S": "p" * 5000}}}).encode()

    def chunked(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-amzn-RequestId: r-2\r\n\r\n")
        for start in range(0, len(document), 1000):
            part = document[start : start + 1000]
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        return True

    server.script = [chunked]
    transport = _transport(server.url())
    first = _post(transport)
    assert first.body == document
    assert first.headers["transfer-encoding"] == "chunked"
    assert _post(transport).status == 200
    assert server.connections == 1


def test_a_body_read_until_the_connection_closes_is_whole_and_the_connection_not_kept(server: Server) -> None:
    def until_close(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + json.dumps(ITEM).encode())
        return False

    server.script = [until_close]
    transport = _transport(server.url())
    assert json.loads(_post(transport).body) == ITEM
    assert transport._idle == []


@pytest.mark.parametrize(
    "truncated",
    [
        _answer(json.dumps(ITEM).encode())[:-5],  # a length the body falls short of
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789",  # a chunk cut, no last chunk
        b"HTTP/1.1 200 OK\r\nContent-Le",  # the headers cut
    ],
    ids=["content-length", "chunked", "headers"],
)
def test_a_truncated_answer_is_botocores_connection_error_and_retried(server: Server, truncated: bytes) -> None:
    def cut(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(truncated)
        return False

    server.script = [cut]
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        _post(_transport(server.url()))
    server.script = [cut]
    assert Table(_client(server.url()), "t").get_item(Key={"pk": "p"})["ResponseMetadata"]["RetryAttempts"] == 1


def test_an_answer_that_is_not_http_is_botocores_connection_error(server: Server) -> None:
    def garbage(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")
        return True

    server.script = [garbage]
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        _post(_transport(server.url()))


def test_an_interim_answer_is_skipped(server: Server) -> None:
    def interim(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        return answer()(sock, head, body)

    server.script = [interim]
    transport = _transport(server.url())
    assert json.loads(_post(transport).body) == ITEM
    assert json.loads(_post(transport).body) == ITEM
    assert server.connections == 1


def test_connection_close_and_http_1_0_answers_are_not_kept(server: Server) -> None:
    def close(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(_answer(b"{}", connection="close"))
        return True  # the server would go on: the client must not

    def http10(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(_answer(b"{}").replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        return True

    server.script = [close, http10]
    transport = _transport(server.url())
    _post(transport)
    _post(transport)
    _post(transport)
    assert server.connections == 3


def test_a_header_or_path_with_a_line_break_is_refused_before_anything_is_sent_as_botocore_refuses_it(
    server: Server,
) -> None:
    transport = _transport(server.url())
    with pytest.raises(botocore.exceptions.HTTPClientError, match="line break"):
        transport.post("/", [("X-Amz-Target", "a\r\nX-Injected: 1")], b"{}")
    with pytest.raises(botocore.exceptions.HTTPClientError, match="line break"):
        transport.post("/ HTTP/1.1\r\nX: y", [], b"{}")
    assert server.bodies == []


def test_a_refused_connection_is_botocores_endpoint_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        _post(_transport(f"http://127.0.0.1:{port}"))


def test_threads_share_the_pool_each_answer_its_own_requests(server: Server) -> None:
    """The stores call from thread pools (stores/rooms.py's 8 readers): each thread's answers are its own, and
    no more connections are kept than the pool's size."""
    server.default = echo
    transport = _transport(server.url(), max_idle=3)
    mixed: list[str] = []
    start = threading.Barrier(8)

    def calls(thread: int) -> None:
        start.wait()
        for call in range(40):
            sent = json.dumps({"thread": thread, "call": call}).encode()
            if _post(transport, sent).body != sent:
                mixed.append(f"{thread}/{call}")

    threads = [threading.Thread(target=calls, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert mixed == []
    assert len(server.bodies) == 320
    assert len(transport._idle) <= 3


# TLS: a private CA, and a server certificate it signs for `localhost` only.
@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ca")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "roomcast test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**_ca_usage()), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "certificate": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["certificate"].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def _ca_usage() -> dict[str, bool]:
    usage = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment", "key_agreement"), False
    )
    return {**usage, "key_cert_sign": True, "crl_sign": True, "encipher_only": False, "decipher_only": False}


@pytest.fixture
def tls_server(authority: dict[str, Path]) -> Iterator[Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(authority["certificate"], authority["key"])
    running = Server(context)
    yield running
    running.stop()


def _tls_client(url: str, **options: Any) -> Any:
    session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1")
    config = Config(retries={"mode": "standard", "total_max_attempts": 1})
    return session.client("dynamodb", endpoint_url=url, config=config, **options)


def test_tls_with_the_ca_bundle_of_aws_ca_bundle_is_verified_and_kept_alive(
    tls_server: Server, authority: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(authority["ca"]))
    table = Table(_tls_client(tls_server.url("localhost")), "t")
    assert table.get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}
    assert table.get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}
    assert tls_server.connections == 1
    assert tls_server.server_names == ["localhost"]  # SNI
    assert b"Host: localhost:" in tls_server.heads[0]


def test_tls_without_the_ca_fails_verification(tls_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with pytest.raises(botocore.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        Table(_tls_client(tls_server.url("localhost")), "t").get_item(Key={"pk": "p"})
    assert tls_server.bodies == []


def test_tls_for_a_name_the_certificate_is_not_for_fails(
    tls_server: Server, authority: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_CA_BUNDLE", str(authority["ca"]))
    with pytest.raises(botocore.exceptions.SSLError):
        Table(_tls_client(tls_server.url("127.0.0.1")), "t").get_item(Key={"pk": "p"})
    assert tls_server.bodies == []


def test_tls_with_verify_given_to_the_client(tls_server: Server, authority: dict[str, Path]) -> None:
    verified = Table(_tls_client(tls_server.url("localhost"), verify=str(authority["ca"])), "t")
    assert verified.get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}
    unverified = Table(_tls_client(tls_server.url("127.0.0.1"), verify=False), "t")
    assert unverified.get_item(Key={"pk": "p"})["Item"] == {"pk": "p"}


@pytest.mark.parametrize("verify", [True, False, "/etc/ssl/roomcast-ca.pem"])
def test_the_transport_verifies_as_the_client_is_configured(verify: Any) -> None:
    session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b", region_name="eu-west-1")
    transport = JsonClient(session.client("dynamodb", verify=verify))._transport
    assert transport.tls
    assert transport.verify == verify
    if verify is not True:
        return
    context = _context(verify)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert _context(False).verify_mode == ssl.CERT_NONE


def test_timeouts_and_pool_size_are_the_clients() -> None:
    client = _client("http://127.0.0.1:9", connect_timeout=1.5, read_timeout=4, max_pool_connections=7)
    transport = JsonClient(client)._transport
    assert (transport.connect_timeout, transport.read_timeout, transport.max_idle) == (1.5, 4, 7)
    assert transport.host == "127.0.0.1:9"


# ---- review: bytes after an answer ----


@pytest.mark.parametrize(
    "after", [_answer(b'{"b":2}') + _answer(b'{"c":3}')[:-3], b"not http at all\r\n"], ids=["answers", "garbage"]
)
def test_bytes_after_an_answer_are_not_taken_into_it_and_the_connection_is_not_kept(
    server: Server, after: bytes
) -> None:
    """What a server sends after the answer's end (in the same read: an answer nobody asked for, or half of one)
    is not part of that answer, and the connection, its parser part-way through it, never goes back to the pool:
    the next call's answer would be read from where those bytes left the parser."""

    def answer_and_more(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(_answer(b'{"a":1}') + after)
        return True

    server.script = [answer_and_more]
    transport = _transport(server.url())
    first = _post(transport)
    assert json.loads(first.body) == {"a": 1}
    assert first.headers["x-amz-crc32"] == str(zlib.crc32(b'{"a":1}'))
    assert json.loads(_post(transport).body) == ITEM
    assert server.connections == 2


@pytest.mark.parametrize("part", ["body", "head"])
def test_an_answer_too_large_fails_instead_of_filling_memory(
    server: Server, part: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body, or headers, past what the transport reads (a hostile server's endless answer) fail the call as
    botocore's connection error, the connection dropped."""
    monkeypatch.setattr(dynamo_http, "MAX_ANSWER_BYTES", 200_000)
    monkeypatch.setattr(dynamo_http, "MAX_HEAD_BYTES", 10_000)

    def huge(sock: socket.socket, head: bytes, body: bytes) -> bool:
        if part == "body":
            sock.sendall(_answer(b"x" * 300_000))
        else:
            sock.sendall(b"HTTP/1.1 200 X\r\n" + b"x-a: b\r\n" * 5_000 + b"Content-Length: 2\r\n\r\n{}")
        return True

    server.script = [huge]
    transport = _transport(server.url())
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        _post(transport)
    assert json.loads(_post(transport).body) == ITEM
    assert server.connections == 2


def test_a_body_read_until_the_connection_closes_cut_by_a_reset_is_botocores_connection_error(server: Server) -> None:
    """A reset is no end of file: a body delimited by the connection's close and cut short by one (TCP RST) is an
    error, never a shorter answer taken as whole."""

    def reset_mid_body(sock: socket.socket, head: bytes, body: bytes) -> bool:
        sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + json.dumps(ITEM).encode()[:-5])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.2)  # the client has read what came before the reset
        sock.close()
        return False

    server.script = [reset_mid_body]
    with pytest.raises(botocore.exceptions.ConnectionClosedError):
        _post(_transport(server.url()))
