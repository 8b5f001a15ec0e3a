"""What a real gateway counts: chargers held, connects, refused handshakes, commands by outcome and latency."""

from __future__ import annotations

import pytest
from fixtures.gateway_fixtures import charger_session, charger_url, wait_held
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from evreserve.models import OcppVersion

pytestmark = pytest.mark.integration


async def test_the_gateway_counts_what_happened_in_an_interval(gateway, seed_charger, registry, commands):
    charger = seed_charger()
    with pytest.raises(InvalidStatus):
        async with connect(charger_url(gateway, charger.ocpp_id, password="not-the-password-00")):
            pass
    with pytest.raises(InvalidStatus):
        async with connect(charger_url(gateway, "NOBODY-HERE")):
            pass
    gateway.metrics.snapshot()  # what the fixture's seeding did is not this test's
    async with charger_session(gateway, charger, OcppVersion.V16):
        await wait_held(gateway, charger, registry)
        outcome = await commands.execute(commands.command(charger, OcppVersion.V16), gateway.queue_url)
        assert outcome.payload is not None
        during = gateway.metrics.snapshot()
    assert (during["ConnectedChargers"], during["Connects"], during["Commands"], during["Commands.result"]) == (
        1,
        1,
        1,
        1,
    )
    assert len(during["CommandLatency"]) == 1 and 0 < during["CommandLatency"][0] < 10_000
    with pytest.raises(InvalidStatus):
        async with connect(charger_url(gateway, "NOBODY-HERE")):
            pass
    with pytest.raises(InvalidStatus):
        async with connect(charger_url(gateway, charger.ocpp_id, password="not-the-password-00")):
            pass
    after = gateway.metrics.snapshot()
    assert (after["HandshakesRefused"], after["HandshakesRefused.404"], after["HandshakesRefused.401"]) == (2, 1, 1)
    assert after["Disconnects"] == 1 and after["ConnectedChargers"] == 0
