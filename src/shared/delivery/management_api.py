"""The API Gateway Management API (`@connections`) behind a small interface.

Posts are the hot path of every broadcast. boto3 spends about 1 ms of CPU per call, which caps a
Lambda at roughly 1000 posts a second whatever its thread count; signing with a day's key
(`shared.protocol.signing`, decision 0075) and sending with aiohttp on a long-lived event loop costs about a
tenth of that (docs/performance.md).
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections import Counter
from collections.abc import Coroutine, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

from shared.observability import MetricUnit, logger, metrics
from shared.protocol.signing import BatchSigner, PostSigner

# asyncio and aiohttp are loaded by the first broadcast, not at import: a cold start that posts nothing skips them.
if TYPE_CHECKING:
    import asyncio

    import aiohttp
    from botocore.credentials import Credentials
    from mypy_boto3_apigatewaymanagementapi import ApiGatewayManagementApiClient

ATTEMPTS = 3
RETRYABLE = {429, 500, 502, 503, 504}
# Answers worth watching (the dashboard and PostsThrottledAlarm), counted per attempt; a 410 is GoneConnections.
ANSWER_METRICS = {
    429: "PostsThrottled",
    500: "PostsServerErrors",
    502: "PostsServerErrors",
    503: "PostsServerErrors",
    504: "PostsServerErrors",
}


class Delivery(Enum):
    DELIVERED = "delivered"
    GONE = "gone"
    FAILED = "failed"


class Gateway(Protocol):
    def post_many(self, connection_ids: Sequence[str], data: bytes) -> list[Delivery]: ...

    def close(self, connection_id: str) -> None: ...


class ManagementApi:
    """`@connections` of one stage. A 410 means the peer is gone for good; 429 and 5xx are retried
    (three attempts in all, with jittered backoff); any other failure is that recipient's alone."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Credentials,
        concurrency: int,
        client: ApiGatewayManagementApiClient,
    ) -> None:
        self._endpoint = endpoint_url.rstrip("/")
        self._signer = PostSigner(self._endpoint, credentials, region)
        self._concurrency = concurrency
        self._client = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._lock = threading.Lock()

    def post_many(self, connection_ids: Sequence[str], data: bytes) -> list[Delivery]:
        if not connection_ids:
            return []
        answers: Counter[int] = Counter()
        deliveries: list[Delivery] = self._run(self._post_all(list(connection_ids), data, answers))
        # Counted here, on the caller's thread: Powertools' metrics are not shared with the event loop's.
        counted: Counter[str] = Counter()
        for status, times in answers.items():
            if status in ANSWER_METRICS:
                counted[ANSWER_METRICS[status]] += times
        for metric, count in counted.items():
            metrics.add_metric(name=metric, unit=MetricUnit.Count, value=count)
        return deliveries

    def close(self, connection_id: str) -> None:
        try:
            self._client.delete_connection(ConnectionId=connection_id)
        except self._client.exceptions.GoneException:
            return

    def shutdown(self) -> None:
        """Close the HTTP session and stop the loop. A Lambda container never needs this (it is frozen,
        not shut down); a tool that makes a sender and exits does, or aiohttp warns of an unclosed session."""
        if self._loop is None:
            return
        import asyncio

        if self._session is not None:
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result()
            self._session = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop = None

    def _run(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run on this container's event loop, started on first use and kept warm with its connections."""
        import asyncio

        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="management-api", daemon=True).start()
        return asyncio.run_coroutine_threadsafe(work, self._loop).result()

    async def _post_all(self, connection_ids: list[str], data: bytes, answers: Counter[int]) -> list[Delivery]:
        import asyncio

        if self._session is None:
            import aiohttp  # on first use: its import would add to every cold start

            self._session = aiohttp.ClientSession(
                # Connections stay open a minute between invocations of a warm container.
                connector=aiohttp.TCPConnector(limit=self._concurrency, ttl_dns_cache=300, keepalive_timeout=60),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            )
        signer = self._signer.batch()
        payload_sha256 = hashlib.sha256(data).hexdigest()  # one payload for the whole batch: hashed once
        session = self._session
        deliveries = [Delivery.FAILED] * len(connection_ids)
        pending = iter(enumerate(connection_ids))

        async def sender() -> None:
            # At most `concurrency` senders, each taking the next recipient when its post is answered: no task
            # or connection waiter per recipient.
            for index, connection_id in pending:
                deliveries[index] = await self._post(
                    session, signer, connection_id, data, payload_sha256, answers=answers
                )

        await asyncio.gather(*(sender() for _ in range(min(self._concurrency, len(connection_ids)))))
        return deliveries

    async def _post(
        self,
        session: aiohttp.ClientSession,
        signer: BatchSigner,
        connection_id: str,
        data: bytes,
        payload_sha256: str,
        *,
        answers: Counter[int],
    ) -> Delivery:
        """One recipient's post, retried; every attempt's status is added to `answers`."""
        import asyncio

        from yarl import URL  # aiohttp's own dependency, loaded with it

        path = f"/@connections/{_encoded_id(connection_id)}"
        # Sent as signed: yarl would otherwise decode `%3D` (connection ids end in `=`) and break the signature.
        target = URL(self._endpoint + path, encoded=True)
        status = 0
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter, not secrecy
            try:
                # Signed at each attempt: a retry after a pause carries its own time.
                headers = signer.headers(path, payload_sha256)
                async with session.post(target, data=data, headers=headers) as response:
                    status = response.status
                answers[status] += 1
            # Any failure, aiohttp's ServerDisconnectedError (not an OSError) included, is this recipient's alone.
            except Exception as error:
                status = 0
                logger.warning("post_to_connection failed", extra={"target": connection_id, "error": str(error)})
                continue
            if status == 410:
                return Delivery.GONE
            if 200 <= status < 300:
                return Delivery.DELIVERED
            if status not in RETRYABLE:
                break
        logger.warning("post_to_connection failed", extra={"target": connection_id, "status": status})
        return Delivery.FAILED


def _encoded_id(connection_id: str) -> str:
    """A connection id as one path segment, as the boto3 client sends it; a `.` or `..` id is escaped too, since
    a signer and a server would otherwise both read it as a dot segment of the path."""
    encoded = quote(connection_id, safe="")
    return encoded.replace(".", "%2E") if encoded in (".", "..") else encoded
