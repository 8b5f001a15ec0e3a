"""Charger connections to a real gateway: auth, subprotocols, replacement, stored connection status."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import pytest
from fixtures.gateway_fixtures import PASSWORD, charger_session, charger_url, wait_held, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from evreserve.models import ConnectionState, OcppVersion

pytestmark = pytest.mark.integration


async def _status_of_refusal(url: str, subprotocols: list[str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, subprotocols=subprotocols or ["ocpp1.6"]):  # type: ignore[list-item]
            pass
    return refused.value.response.status_code


async def test_right_credentials_are_accepted(gateway, seed_charger, registry):
    """A charger with username == identity and its password connects and is registered here."""
    charger = seed_charger()
    async with charger_session(gateway, charger):
        await wait_held(gateway, charger, registry)


async def test_wrong_password_gets_401(gateway, seed_charger):
    """A wrong password is refused before the upgrade."""
    charger = seed_charger()
    assert await _status_of_refusal(charger_url(gateway, charger.ocpp_id, "wrong-password-123")) == 401


async def test_username_other_than_identity_gets_401(gateway, seed_charger):
    """The right password under another username is refused (A00.FR.204)."""
    charger = seed_charger()
    assert await _status_of_refusal(charger_url(gateway, charger.ocpp_id, PASSWORD, user="someone-else")) == 401


async def test_missing_credentials_get_401(gateway, seed_charger):
    """A charger with a password must send it."""
    charger = seed_charger()
    assert await _status_of_refusal(charger_url(gateway, charger.ocpp_id, None)) == 401


async def test_charger_registered_without_password_connects_without_auth(gateway, seed_charger, registry):
    """Security profile 0 is accepted when the registry says so explicitly."""
    charger = seed_charger(password=False, allow_no_password=True)
    async with charger_session(gateway, charger, password=None):
        await wait_held(gateway, charger, registry)


async def test_unknown_identity_gets_404(gateway):
    """An identity the registry does not know is refused with 404 before the upgrade."""
    assert await _status_of_refusal(f"ws://x:y@127.0.0.1:{gateway.port}/ocpp/NOPE-{id(gateway)}") == 404


async def test_identity_with_a_colon_is_refused(gateway):
    """An identity that cannot be a Basic auth username is not looked up."""
    assert await _status_of_refusal(f"ws://127.0.0.1:{gateway.port}/ocpp/a%3Ab") == 404


async def test_health_endpoint_answers_json(gateway):
    """GET /health on the charger port answers 200 with the instance id."""

    def get() -> tuple[int, dict]:
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.port}/health", timeout=5) as response:
            return response.status, json.loads(response.read())

    status, body = await asyncio.to_thread(get)
    assert (status, body["status"], body["instanceId"]) == (200, "ok", gateway.instance_id)


async def test_newest_offered_version_is_chosen(gateway, seed_charger):
    """A charger offering both versions speaks 2.0.1 when the registry pins none."""
    charger = seed_charger()
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp1.6", "ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp2.0.1"


async def test_registry_version_wins_over_preference(gateway, seed_charger):
    """A charger pinned to 1.6 in the registry speaks 1.6 even when it also offers 2.0.1."""
    charger = seed_charger(ocpp_version=OcppVersion.V16)
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp2.0.1", "ocpp1.6"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "ocpp1.6"


async def test_no_subprotocol_is_accepted_with_the_registry_version(gateway, seed_charger, registry):
    """A charger offering no subprotocol speaks the version the registry has for it."""
    charger = seed_charger(ocpp_version=OcppVersion.V201)
    async with connect(charger_url(gateway, charger.ocpp_id)) as ws:
        assert ws.subprotocol is None
        await wait_held(gateway, charger, registry)
        await ws.send('[2,"1","Heartbeat",{}]')
        assert json.loads(await ws.recv())[0] == 3
    stored = registry.get_charger(charger.id)
    assert stored.connection.protocol is OcppVersion.V201


async def test_no_subprotocol_and_no_registry_version_is_closed(gateway, seed_charger):
    """Without any version to speak, the handshake completes without a subprotocol and the socket closes."""
    charger = seed_charger()
    async with connect(charger_url(gateway, charger.ocpp_id)) as ws:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1002


async def test_unsupported_subprotocol_is_closed(gateway, seed_charger):
    """A charger offering only a version the gateway does not speak is closed after the handshake."""
    charger = seed_charger()
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp2.1"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol is None
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 5)


async def test_second_connection_replaces_the_first(gateway, seed_charger, registry):
    """A new connection for a held identity closes the old socket and takes over the registration."""
    charger = seed_charger()
    async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp1.6"]) as first:  # type: ignore[list-item]
        await wait_held(gateway, charger, registry)
        old_session = registry.get_charger(charger.id).connection.session_id
        async with connect(charger_url(gateway, charger.ocpp_id), subprotocols=["ocpp1.6"]) as second:  # type: ignore[list-item]
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(first.recv(), 5)
            await wait_until(
                lambda: registry.get_charger(charger.id).connection.session_id != old_session, what="new session"
            )
            await second.send('[2,"1","Heartbeat",{}]')
            assert json.loads(await second.recv())[0] == 3
            assert registry.get_charger(charger.id).is_connected


async def test_disconnection_is_recorded(gateway, seed_charger, registry):
    """When the charger leaves, its connection is stored as disconnected with the protocol it spoke."""
    charger = seed_charger()
    async with charger_session(gateway, charger, OcppVersion.V201):
        await wait_held(gateway, charger, registry)
    stored = await wait_until(
        lambda: (c := registry.get_charger(charger.id)).connection.state is ConnectionState.DISCONNECTED and c,
        what="disconnection",
    )
    assert stored.connection.protocol is OcppVersion.V201
    assert stored.connection.queue_url == gateway.queue_url
    assert not gateway.holds(charger.ocpp_id)
