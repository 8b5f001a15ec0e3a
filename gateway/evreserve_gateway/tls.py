"""The gateway's TLS contexts: its own listener's (optional) and security profile 3's, with client certificates."""

from __future__ import annotations

import ssl
import tempfile
from pathlib import Path

from .settings import GatewaySettings


def listener_context(settings: GatewaySettings) -> ssl.SSLContext | None:
    """TLS on the charger port, when the gateway terminates it instead of the load balancer."""
    cert, key = settings.gateway_tls_cert_file, settings.gateway_tls_key_file
    if cert is None or key is None:
        return None
    return _tls(cert, key)


def client_certificate_context(settings: GatewaySettings) -> ssl.SSLContext:
    """TLS that requires a client certificate chaining to a trusted CA, within its validity (profile 3)."""
    s = settings
    if s.gateway_mtls_cert_file is not None and s.gateway_mtls_key_file is not None:
        context = _tls(s.gateway_mtls_cert_file, s.gateway_mtls_key_file)
    else:
        assert s.gateway_mtls_cert_pem is not None and s.gateway_mtls_key_pem is not None  # settings check
        # ssl loads a certificate chain from files only: a private directory, gone at once.
        with tempfile.TemporaryDirectory(prefix="evreserve-mtls-") as directory:
            cert, key = Path(directory) / "cert.pem", Path(directory) / "key.pem"
            cert.write_text(s.gateway_mtls_cert_pem.get_secret_value())
            key.touch(mode=0o600)
            key.write_text(s.gateway_mtls_key_pem.get_secret_value())
            context = _tls(cert, key)
    context.verify_mode = ssl.CERT_REQUIRED
    if s.gateway_tls_client_ca_file is not None:
        context.load_verify_locations(cafile=s.gateway_tls_client_ca_file)
    else:
        context.load_verify_locations(cadata=s.gateway_tls_client_ca_pem)
    return context


def _tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP security profiles 2 and 3
    context.load_cert_chain(cert, key)
    return context
