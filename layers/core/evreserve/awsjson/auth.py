"""Credentials and SigV4 signing, for the one kind of request the client makes."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import threading
from collections.abc import Mapping
from typing import Any

from .errors import NoCredentials

Credentials = tuple[str, str, str | None]


class EnvironmentCredentials:
    """The environment's keys (Lambda sets them, and sets them anew after a SnapStart
    restore, so they are read per request); else botocore's provider chain, built once."""

    def __init__(self) -> None:
        self._chain: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Credentials:
        key = os.environ.get("AWS_ACCESS_KEY_ID")
        secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if key and secret:
            return key, secret, os.environ.get("AWS_SESSION_TOKEN") or None
        with self._lock:
            if self._chain is None:
                import botocore.session

                self._chain = botocore.session.get_session().get_credentials()
                if self._chain is None:
                    raise NoCredentials("no AWS credentials in the environment or botocore's provider chain")
        frozen = self._chain.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token


class Signer:
    """SigV4 for a POST of a body to ``/`` with no query, the only request this client makes."""

    def __init__(self, region: str, service: str, host: str) -> None:
        self._region = region
        self._service = service
        self._host = host
        self._keys: tuple[str, str, bytes] | None = None

    def _key(self, secret: str, day: str) -> bytes:
        # The derived key changes once a day (and with the secret): derive it once, not per request.
        cached = self._keys
        if cached is not None and cached[0] == secret and cached[1] == day:
            return cached[2]
        key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
        for part in (self._region, self._service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._keys = (secret, day, key)
        return key

    def headers(
        self,
        body: bytes,
        content_type: str,
        target: str,
        credentials: Credentials,
        now: dt.datetime,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The request's headers, ``Authorization`` included; ``extra`` ones (lower-case
        names) are sent and signed too."""
        access_key, secret, token = credentials
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {"content-type": content_type, "host": self._host, "x-amz-date": stamp, "x-amz-target": target}
        if token:
            signed["x-amz-security-token"] = token
        if extra:
            signed.update(extra)
        names = sorted(signed)
        canonical = "\n".join(
            (
                "POST",
                "/",
                "",
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._key(secret, day), to_sign.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": content_type,
            "Host": self._host,
            "X-Amz-Date": stamp,
            "X-Amz-Target": target,
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                f"Signature={signature}"
            ),
        }
        if token:
            headers["X-Amz-Security-Token"] = token
        if extra:
            headers.update(extra)
        return headers
