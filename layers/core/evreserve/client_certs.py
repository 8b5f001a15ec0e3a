"""OCPP security profile 3: the home of what a charger's client certificate must be.

A profile 3 charger authenticates with a TLS client certificate instead of a password.
Its registry entry names the CA that must have issued the certificate and how the
certificate is bound to the charger: by default its subject CN is the charger's
``ocppId`` (as OCPP's security whitepaper has it); a registered SHA-256 fingerprint
binds one exact certificate instead. The gateway's TLS listener checks the chain to a
trusted CA and the validity period; :func:`refusal` then checks that this certificate
belongs to this charger.

Imported only where certificates are handled (the chargers API and the gateway's
handshake): ``cryptography`` is not paid for by the other functions' cold starts.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from .errors import InvalidRequest
from .models import ClientCertificate

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
#: Far above any one CA certificate; a bound on what a request may make us parse.
MAX_PEM_LENGTH = 16_384


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a certificate, lowercase hex without separators."""
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(value: str) -> str:
    """``AB:CD:...`` or ``abcd...``: the 64 lowercase hex digits, or 400."""
    cleaned = value.replace(":", "").strip().lower()
    if not _FINGERPRINT.match(cleaned):
        raise InvalidRequest(
            "certificateFingerprint must be a SHA-256 fingerprint: 64 hex digits", field="certificateFingerprint"
        )
    return cleaned


def check_ca(pem: str) -> str:
    """A CA certificate in PEM, as stored: exactly one certificate that is a CA, else 400."""
    if len(pem) > MAX_PEM_LENGTH:
        raise InvalidRequest("caCertificate is too long for one certificate", field="caCertificate")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise InvalidRequest("caCertificate is not a PEM certificate", field="caCertificate") from None
    if len(certificates) != 1:
        raise InvalidRequest("caCertificate must hold exactly one certificate", field="caCertificate")
    (certificate,) = certificates
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise InvalidRequest("caCertificate is not a CA certificate (basicConstraints CA:TRUE)", field="caCertificate")
    return certificate.public_bytes(Encoding.PEM).decode("ascii")


def refusal(ocpp_id: str, rule: ClientCertificate, der: bytes | None, now: datetime) -> str | None:
    """Why this TLS client certificate does not admit charger ``ocpp_id``; ``None``: it does."""
    if der is None:
        return "no client certificate (security profile 3)"
    try:
        certificate = x509.load_der_x509_certificate(der)
        ca = x509.load_pem_x509_certificate(rule.ca_pem.encode("ascii"))
    except ValueError:
        return "unreadable certificate"
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "not issued by the charger's CA"
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return "certificate outside its validity period"
    if rule.fingerprint_sha256 is not None:
        return None if fingerprint(der) == rule.fingerprint_sha256 else "not the charger's registered certificate"
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if [str(name.value) for name in names] != [ocpp_id]:
        return "subject CN is not the charger's ocppId"
    return None
