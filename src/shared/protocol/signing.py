"""SigV4 for `@connections` posts and DynamoDB calls, the few lines of it a POST needs (decisions 0075, 0104).

botocore's `SigV4Auth` derives the signing key (four HMACs) and rebuilds every header map for each request,
which was half the CPU of a post. AWS's key is a function of the secret, the date, the region and the service
alone (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html#derive-signing-key), so it is
derived once a day here and each post costs one SHA-256 and one HMAC. What is signed is what botocore signs for
the same request, byte for byte (tests/test_signing.py checks it against botocore's own signer): the method, the
path as botocore canonicalises it, the host, `x-amz-date`, the session token when there is one, and the payload's
SHA-256; a DynamoDB call (decision 0104) signs its content type and target too, as botocore does. Credentials
come from botocore's provider chain and are read on every batch, so rotated ones (a Lambda role's session token,
refreshable credentials) sign the next batch."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

if TYPE_CHECKING:
    from botocore.credentials import Credentials, ReadOnlyCredentials

ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


class PostSigner:
    """Signs POSTs under one endpoint (`https://{api}/{stage}`) to paths below it, for one region and service."""

    def __init__(self, endpoint_url: str, credentials: Credentials, region: str, service: str = "execute-api") -> None:
        self._credentials = credentials
        self._region = region
        self._service = service
        # The host and the canonical form of the endpoint's path, as botocore's signer derives them.
        probe = AWSRequest(method="POST", url=endpoint_url)
        self.host = SigV4Auth(credentials, service, region).headers_to_sign(probe)["host"]
        self._base_path = quote(urlsplit(endpoint_url).path.rstrip("/"), safe="/~")
        self._key: tuple[str, str, bytes] | None = None  # (secret, date, signing key)

    def batch(self) -> BatchSigner:
        """A signer for the posts of one batch: the credentials as they are now, the key of today."""
        frozen = self._credentials.get_frozen_credentials()
        return BatchSigner(self, frozen)

    def signing_key(self, secret: str, date: str) -> bytes:
        """The day's key for this secret, derived on the first request of a day or of a rotated secret."""
        cached = self._key  # read once: another thread's batch may cache another secret's or day's key meanwhile
        if cached is None or cached[0] != secret or cached[1] != date:
            key = _hmac(f"AWS4{secret}".encode(), date)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            cached = self._key = (secret, date, key)
        return cached[2]

    def scope(self, date: str) -> str:
        return f"{date}/{self._region}/{self._service}/aws4_request"

    def canonical_path(self, encoded_path: str) -> str:
        """botocore's canonical URI of `{endpoint path}{encoded_path}` (already percent-encoded, as sent):
        encoded once more. Paths here never hold `.` or `..` segments (ids are percent-encoded whole)."""
        return self._base_path + quote(encoded_path, safe="/~")


class BatchSigner:
    def __init__(self, signer: PostSigner, credentials: ReadOnlyCredentials) -> None:
        if not credentials.access_key or not credentials.secret_key:
            raise RuntimeError("no AWS credentials to sign @connections requests with")
        self._signer = signer
        self._credentials = credentials
        self._secret = credentials.secret_key
        token = credentials.token
        self._token_line = f"x-amz-security-token:{token}\n" if token else ""
        self._signed_headers = "host;x-amz-date;x-amz-security-token" if token else "host;x-amz-date"

    def headers(
        self, encoded_path: str, payload_sha256: str, at: float | None = None, signed: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The headers that sign a POST of a payload with this SHA-256 (hex) to `encoded_path` under the endpoint;
        `signed`, the request's other headers botocore would sign (a DynamoDB call's content type and target)."""
        signer = self._signer
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(at))
        date = amz_date[:8]
        if signed:
            lines = {name.lower(): " ".join(value.split()) for name, value in signed.items()}
            lines.update(host=signer.host, **{"x-amz-date": amz_date})
            if self._credentials.token:
                lines["x-amz-security-token"] = self._credentials.token
            names = sorted(lines)
            canonical_headers = "".join(f"{name}:{lines[name]}\n" for name in names)
            signed_headers = ";".join(names)
        else:
            canonical_headers = f"host:{signer.host}\nx-amz-date:{amz_date}\n{self._token_line}"
            signed_headers = self._signed_headers
        canonical = (
            f"POST\n{signer.canonical_path(encoded_path)}\n\n{canonical_headers}\n{signed_headers}\n{payload_sha256}"
        )
        scope = signer.scope(date)
        to_sign = f"{ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
        key = signer.signing_key(self._secret, date)
        signature = hmac.new(key, to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        headers = {
            "X-Amz-Date": amz_date,
            "Authorization": (
                f"{ALGORITHM} Credential={self._credentials.access_key}/{scope}, "
                f"SignedHeaders={signed_headers}, Signature={signature}"
            ),
        }
        if self._credentials.token:
            headers["X-Amz-Security-Token"] = self._credentials.token
        return headers
