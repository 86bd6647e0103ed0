"""DynamoDB's HTTP/1.1: POSTs over kept-alive connections, written and read here (decision 0105).

After decision 0104 made each call by hand, most of what was left of one was urllib3 and `http.client` carrying
it: the request put together header by header through three layers, the answer's headers parsed by
`email.feedparser` and kept in two case-insensitive maps, a pool and a timeout object around each request. This
module writes the request's bytes itself, one `sendall`, and reads the answer with `httptools` (MagicStack's
binding of llhttp, Node's HTTP parser, as uvicorn uses it): status, headers, a body by `Content-Length`, chunked,
or until the connection closes.

What it keeps of urllib3's pool as decision 0104 used it:
- connections kept alive, a few at once (`max_idle`, the client's `max_pool_connections`); more at once are
  opened and closed after their answer, never waited for. Thread-safe: the stores call from thread pools.
- an idle connection the server has closed (or that has unread bytes) is noticed before it is used and dropped;
  one that fails as it is reused, before any byte of an answer came (the server closed it as the request went:
  the keep-alive race), is retried once on a new connection, unseen by the retry handler. Only then: a read
  timeout, a truncated answer, or a new connection's failure are raised.
- failures raised as botocore's own (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
  ConnectionClosedError, SSLError, HTTPClientError), as botocore's urllib3 session raises them, so that its retry
  handlers treat them as theirs;
- the connect timeout for the connection and its TLS handshake, the read timeout for each read;
- TLS for `https` endpoints: the server's name sent (SNI) and checked, its certificate verified against the CA
  bundle the client's `verify` (or AWS_CA_BUNDLE) names, or certifi's; not verified when `verify` is false;
- TCP_NODELAY, as urllib3 sets it.
Not done, as before (decision 0104): proxies, client certificates, TCP keep-alive probes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Iterable
from functools import lru_cache
from os import path as os_path
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.httpsession import get_cert_path

READ_SIZE = 65536
# The most of an answer read (DynamoDB's largest, a BatchGetItem's, is 16 MB) and of its head: a server that sends
# more (or a hostile one that never ends its body or its headers) fails the call instead of filling memory.
MAX_ANSWER_BYTES = 64 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
# Headers this module writes itself: a caller's own are not sent twice.
OWN_HEADERS = frozenset(("host", "content-length", "accept-encoding"))


class Headers(dict[str, str]):
    """An answer's headers by lower-cased name (as botocore's ResponseMetadata gives them), looked up in any case,
    as botocore's case-insensitive maps are by its parsers and retry checks."""

    def __getitem__(self, name: str) -> str:
        return dict.__getitem__(self, name.lower())

    def __contains__(self, name: object) -> bool:
        return dict.__contains__(self, name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return dict.get(self, name.lower(), default)


class Answer:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class _Stale(Exception):
    """A reused connection failed before any byte of its answer: the server had closed it."""


class _Connection:
    """One kept-alive connection and the parser of its answers (httptools calls the `on_*` methods)."""

    __slots__ = (
        "_body",
        "_complete",
        "_fields",
        "_head_bytes",
        "_headers_done",
        "_keep_alive",
        "_parser",
        "_parser_error",
        "_trailing",
        "reused",
        "sock",
    )

    def __init__(self, sock: socket.socket) -> None:
        # Imported by the first connection, not by every function's import (a cold start's cost: authorizer).
        import httptools

        self.sock = sock
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._parser_error: type[Exception] = httptools.HttpParserError
        self._reset()

    def _reset(self) -> None:
        self._fields: dict[str, str] = {}
        self._head_bytes = 0
        self._body: list[bytes] = []
        self._headers_done = False
        self._complete = False
        self._keep_alive = False
        # Bytes came after the answer's end (in its last read): not part of it, and the parser is left part-way
        # through them, so the connection is not used again.
        self._trailing = False

    # httptools' callbacks
    def on_message_begin(self) -> None:
        if self._complete:
            self._trailing = True

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._complete:
            return
        self._head_bytes += len(name) + len(value)
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers = self._fields
        headers[key] = f"{headers[key]}, {text}" if key in headers else text  # repeated: joined, as urllib3 joins

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        if not self._complete:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._complete:
            return
        parser = self._parser
        if 100 <= parser.get_status_code() < 200:  # an interim answer (100 Continue): the real one follows
            self._fields = {}
            self._headers_done = False
            return
        self._complete = True
        # Asked here: llhttp forgets the answer's connection flags once this callback returns.
        self._keep_alive = parser.should_keep_alive()

    def exchange(self, request: bytes | list[bytes], url: str) -> tuple[Answer, bool]:
        """Sends the request, reads its answer; the answer and whether the connection may be used again."""
        self._send(request, url)
        self._read(url)
        answer = Answer(self._parser.get_status_code(), Headers(self._fields), b"".join(self._body))
        again = self._complete and self._keep_alive and not self._trailing
        self._reset()
        return answer, again

    def _send(self, request: bytes | list[bytes], url: str) -> None:
        sock = self.sock
        try:
            if isinstance(request, bytes):
                sock.sendall(request)
            else:
                for part in request:
                    sock.sendall(part)
        except TimeoutError as error:
            raise ReadTimeoutError(endpoint_url=url, error=error) from error
        except ssl.SSLError as error:
            if self.reused and isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
                raise _Stale from error
            raise SSLError(endpoint_url=url, error=error) from error
        except OSError as error:  # a broken pipe, a reset
            if self.reused:
                raise _Stale from error
            raise ConnectionClosedError(error=error, request=None, endpoint_url=url) from error

    def _read(self, url: str) -> None:
        """Reads until the parser has the whole answer (or the connection closes where that ends it)."""
        sock = self.sock
        feed = self._parser.feed_data
        received = 0
        while not self._complete:
            reset = False
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError as error:
                raise ReadTimeoutError(endpoint_url=url, error=error) from error
            except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                data = b""  # the connection closed (TLS without its close_notify): as an end of file
            except ConnectionError:
                data, reset = b"", True  # reset: an end, but not one that ends a body read until the close
            except ssl.SSLError as error:
                raise SSLError(endpoint_url=url, error=error) from error
            except OSError as error:
                raise ConnectionClosedError(error=error, request=None, endpoint_url=url) from error
            if not data:
                self._closed(received, reset, url)
                return  # a body read until the connection closes, which ends it
            received += len(data)
            if received > MAX_ANSWER_BYTES:
                raise _too_large(received, url)
            try:
                feed(data)
            except self._parser_error as error:
                if self._complete:  # what is not HTTP came after the whole answer: the answer stands
                    self._trailing = True
                    return
                raise ConnectionClosedError(error=error, request=None, endpoint_url=url) from error
            if self._head_bytes > MAX_HEAD_BYTES:
                raise _too_large(received, url)

    def _closed(self, received: int, reset: bool, url: str) -> None:
        """The connection closed (`reset`: by a reset) after `received` bytes of the answer: returns when that ends
        it (a body read until the close), else raises."""
        if received == 0 and self.reused:
            raise _Stale
        if not reset and self._headers_done and "content-length" not in self._fields and not _chunked(self._fields):
            return
        raise ConnectionClosedError(
            error=f"the connection closed after {received} bytes of an answer", request=None, endpoint_url=url
        )

    def idle_but_closed(self) -> bool:
        """Whether the server closed this idle connection (or sent what no request asked for): readable now."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _too_large(received: int, url: str) -> ConnectionClosedError:
    return ConnectionClosedError(
        error=f"an answer larger than this transport reads ({received} bytes)", request=None, endpoint_url=url
    )


def _chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


class Transport:
    """POSTs to one endpoint (`scheme://host[:port]`) over connections kept alive; see the module."""

    def __init__(
        self,
        endpoint_url: str,
        host: str,
        *,
        verify: Any = True,
        connect_timeout: float | None = 60,
        read_timeout: float | None = 60,
        max_idle: int = 10,
    ) -> None:
        parts = urlsplit(endpoint_url)
        self.url = endpoint_url
        self.tls = parts.scheme == "https"
        self.hostname = parts.hostname or ""
        self.port = parts.port or (443 if self.tls else 80)
        self.host = host  # the Host header: the one the request is signed for
        self.verify = verify
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._head = f"HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: identity\r\n"

    def post(self, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> Answer:
        """One POST and its answer; botocore's exceptions when it fails (see the module)."""
        try:
            return self._post(path, headers, body)
        except BotoCoreError:
            raise
        except Exception as error:  # as botocore's session raises what it does not know (a header it refuses)
            raise HTTPClientError(error=error) from error

    def _post(self, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> Answer:
        request = self._request(path, headers, body)
        connection = self._take()
        if connection is not None:
            try:
                return self._exchange(connection, request)
            except _Stale:
                pass  # closed by the server as the request went: once more, on a new connection
        connection = self._connect()
        try:
            return self._exchange(connection, request)
        except _Stale as error:  # not reused, so never: for the type checker
            raise ConnectionClosedError(error=error, request=None, endpoint_url=self.url) from error

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _request(self, path: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes | list[bytes]:
        lines = [f"POST {path} {self._head}"]
        for name, value in headers:
            if name.lower() not in OWN_HEADERS:
                lines.append(f"{name}: {value}\r\n")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        head = "".join(lines)
        # A line break inside a name or a value would make headers (or a request) of its own: each line has one.
        breaks = len(lines) + 3  # the request line, Host and Accept-Encoding in the first, the blank line in the last
        if head.count("\n") != breaks or head.count("\r") != breaks or " " in path:
            raise ValueError("a header or the path holds a line break or a space")
        data = head.encode("latin-1")
        return data + body if len(body) < READ_SIZE else [data, body]

    def _take(self) -> _Connection | None:
        while True:
            with self._lock:
                if not self._idle:
                    return None
                connection = self._idle.pop()
            if connection.idle_but_closed():
                connection.close()
                continue
            return connection

    def _exchange(self, connection: _Connection, request: bytes | list[bytes]) -> Answer:
        try:
            answer, again = connection.exchange(request, self.url)
        except BaseException:
            connection.close()
            raise
        if again:
            connection.reused = True
            with self._lock:
                if len(self._idle) < self.max_idle:
                    self._idle.append(connection)
                    return answer
        connection.close()
        return answer

    def _connect(self) -> _Connection:
        url = self.url
        try:
            sock = socket.create_connection((self.hostname, self.port), timeout=self.connect_timeout)
        except TimeoutError as error:
            raise ConnectTimeoutError(endpoint_url=url, error=error) from error
        except OSError as error:  # refused, unreachable, a name not resolved
            raise EndpointConnectionError(endpoint_url=url, error=error) from error
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls:
                sock = _context(self.verify).wrap_socket(sock, server_hostname=self.hostname)
            sock.settimeout(self.read_timeout)
        except TimeoutError as error:
            sock.close()
            raise ConnectTimeoutError(endpoint_url=url, error=error) from error
        except (ssl.SSLError, ssl.CertificateError) as error:
            sock.close()
            raise SSLError(endpoint_url=url, error=error) from error
        except OSError as error:
            sock.close()
            raise EndpointConnectionError(endpoint_url=url, error=error) from error
        except BaseException:
            sock.close()
            raise
        return _Connection(sock)


@lru_cache(maxsize=8)
def _context(verify: Any) -> ssl.SSLContext:
    """The TLS context for botocore's `verify` (a bool, or a CA bundle's path), as its urllib3 session sets it up:
    certificates unchecked, or checked against that bundle (a file or a directory; certifi's for `True`) with the
    server's name; TLS 1.2 at least. Made once per setting: loading a bundle costs milliseconds."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = get_cert_path(verify)
    if bundle is None:
        context.load_default_certs()
    elif os_path.isdir(bundle):
        context.load_verify_locations(capath=bundle)
    else:
        context.load_verify_locations(cafile=bundle)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context
