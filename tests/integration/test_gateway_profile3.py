"""OCPP security profile 3: chargers that log in with a TLS client certificate, on the gateway's own listener.

Certificates are made here: two CAs the gateway trusts (the charger's and another
operator's), one it does not, a server certificate for 127.0.0.1, and chargers' client
certificates: right, from the wrong CA, for the wrong identity, expired.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fixtures.certs import Issued, issue, make_ca
from fixtures.gateway_fixtures import PASSWORD, charger_url
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from evreserve.client_certs import fingerprint
from evreserve.models import ClientCertificate, OcppVersion
from simulator import SimulatedCharger

pytestmark = pytest.mark.integration

V16 = OcppVersion.V16.subprotocol
#: A certificate the TLS handshake refuses: the server's alert (TLS 1.2), or a connection
#: closed before any HTTP answer (TLS 1.3 checks the client's certificate after the handshake).
TLS_REFUSED = (ssl.SSLError, InvalidMessage, ConnectionError)


class Pki:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.charger_ca = make_ca("Charger CA")
        self.other_ca = make_ca("Other operator CA")
        self.untrusted_ca = make_ca("Untrusted CA")
        self.server_ca = make_ca("Gateway CA")
        bundle = directory / "client-cas.pem"
        bundle.write_text(self.charger_ca.pem + self.other_ca.pem)
        self.client_cas = bundle
        self.server_cert, self.server_key = issue(self.server_ca, "gateway", server=True).write(directory, "server")

    def client_context(self, client: Issued | None) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.server_ca.pem)
        if client is not None:
            name = f"client-{fingerprint(client.der)[:12]}"
            cert, key = client.write(self.dir, name)
            context.load_cert_chain(cert, key)
        return context


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


@pytest.fixture
async def mtls_gateway(start_gateway: Any, pki: Pki) -> Any:
    return await start_gateway(
        gateway_mtls_port=0,
        gateway_mtls_cert_file=pki.server_cert,
        gateway_mtls_key_file=pki.server_key,
        gateway_tls_client_ca_file=pki.client_cas,
    )


def profile3(seed_charger: Any, registry: Any, pki: Pki, fingerprint_of: Issued | None = None) -> Any:
    charger = seed_charger(password=False)
    rule = ClientCertificate(
        ca_pem=pki.charger_ca.pem, fingerprint_sha256=fingerprint(fingerprint_of.der) if fingerprint_of else None
    )
    updated = charger.model_copy(update={"security_profile": 3, "client_certificate": rule})
    registry.update_charger(charger, updated)
    return updated


async def open_mtls(gateway: Any, pki: Pki, ocpp_id: str, client: Issued | None, password: str | None = None) -> None:
    """Open and close a session on the profile 3 listener; raises what the handshake raised."""
    credentials = f"{ocpp_id}:{password}@" if password else ""
    url = f"wss://{credentials}127.0.0.1:{gateway.mtls_port}/ocpp/{ocpp_id}"
    async with connect(url, ssl=pki.client_context(client), subprotocols=[V16], open_timeout=5) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == V16


async def test_the_right_certificate_admits_a_profile_3_charger(mtls_gateway, seed_charger, registry, pki):
    charger = profile3(seed_charger, registry, pki)
    await open_mtls(mtls_gateway, pki, charger.ocpp_id, issue(pki.charger_ca, charger.ocpp_id))


async def test_a_certificate_of_another_trusted_ca_is_refused(mtls_gateway, seed_charger, registry, pki):
    """The chain verifies (the CA is trusted) but it is not the charger's CA: 401."""
    charger = profile3(seed_charger, registry, pki)
    with pytest.raises(InvalidStatus) as refused:
        await open_mtls(mtls_gateway, pki, charger.ocpp_id, issue(pki.other_ca, charger.ocpp_id))
    assert refused.value.response.status_code == 401


async def test_a_certificate_of_an_untrusted_ca_fails_the_tls_handshake(mtls_gateway, seed_charger, registry, pki):
    charger = profile3(seed_charger, registry, pki)
    with pytest.raises(TLS_REFUSED):
        await open_mtls(mtls_gateway, pki, charger.ocpp_id, issue(pki.untrusted_ca, charger.ocpp_id))


async def test_a_certificate_for_another_identity_is_refused(mtls_gateway, seed_charger, registry, pki):
    charger = profile3(seed_charger, registry, pki)
    with pytest.raises(InvalidStatus) as refused:
        await open_mtls(mtls_gateway, pki, charger.ocpp_id, issue(pki.charger_ca, "SOMEONE-ELSE"))
    assert refused.value.response.status_code == 401


async def test_an_expired_certificate_fails_the_tls_handshake(mtls_gateway, seed_charger, registry, pki):
    charger = profile3(seed_charger, registry, pki)
    past = datetime.now(UTC) - timedelta(days=10)
    expired = issue(pki.charger_ca, charger.ocpp_id, not_before=past - timedelta(days=30), not_after=past)
    with pytest.raises(TLS_REFUSED):
        await open_mtls(mtls_gateway, pki, charger.ocpp_id, expired)


async def test_a_registered_fingerprint_binds_one_certificate_whatever_its_name(
    mtls_gateway, seed_charger, registry, pki
):
    device = issue(pki.charger_ca, "serial-0042")
    charger = profile3(seed_charger, registry, pki, fingerprint_of=device)
    await open_mtls(mtls_gateway, pki, charger.ocpp_id, device)
    with pytest.raises(InvalidStatus) as refused:  # the CA's other certificate, even with the right CN
        await open_mtls(mtls_gateway, pki, charger.ocpp_id, issue(pki.charger_ca, charger.ocpp_id))
    assert refused.value.response.status_code == 401


async def test_a_profile_3_charger_cannot_log_in_with_a_password(mtls_gateway, seed_charger, registry, pki):
    """Its password (it had one before it moved to profile 3), on the plain listener: 401."""
    charger = seed_charger()
    rule = ClientCertificate(ca_pem=pki.charger_ca.pem)
    registry.update_charger(charger, charger.model_copy(update={"security_profile": 3, "client_certificate": rule}))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(charger_url(mtls_gateway, charger.ocpp_id), subprotocols=[V16], open_timeout=5):  # type: ignore[list-item]
            pass
    assert refused.value.response.status_code == 401


async def test_a_profile_2_charger_cannot_skip_its_password_with_a_certificate(mtls_gateway, seed_charger, pki):
    charger = seed_charger()
    certificate = issue(pki.charger_ca, charger.ocpp_id)
    with pytest.raises(InvalidStatus) as refused:
        await open_mtls(mtls_gateway, pki, charger.ocpp_id, certificate)
    assert refused.value.response.status_code == 401
    await open_mtls(mtls_gateway, pki, charger.ocpp_id, certificate, password=PASSWORD)


async def test_the_simulator_plays_a_profile_3_charger(mtls_gateway, seed_charger, registry, pki):
    """The simulated charger with its certificate (as --ca/--cert/--key give it) boots on the profile 3 listener."""
    charger = profile3(seed_charger, registry, pki)
    context = pki.client_context(issue(pki.charger_ca, charger.ocpp_id))
    url = f"wss://127.0.0.1:{mtls_gateway.mtls_port}/ocpp"
    async with SimulatedCharger(charger.ocpp_id, url, version="1.6", tls=context) as sim:
        await sim.wait_for(lambda c: c.sent["StatusNotification"] >= 2, timeout=10)
        assert sim.sent["BootNotification"] == 1 and mtls_gateway.holds(charger.ocpp_id)


async def test_the_profile_3_listener_takes_its_certificates_as_pem_text(start_gateway, seed_charger, registry, pki):
    """As ECS passes secrets: GATEWAY_MTLS_CERT_PEM, _KEY_PEM and GATEWAY_TLS_CLIENT_CA_PEM instead of files."""
    gateway = await start_gateway(
        gateway_mtls_port=0,
        gateway_mtls_cert_pem=pki.server_cert.read_text(),
        gateway_mtls_key_pem=pki.server_key.read_text(),
        gateway_tls_client_ca_pem=pki.client_cas.read_text(),
    )
    charger = profile3(seed_charger, registry, pki)
    await open_mtls(gateway, pki, charger.ocpp_id, issue(pki.charger_ca, charger.ocpp_id))
