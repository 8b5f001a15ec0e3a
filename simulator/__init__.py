"""A charger simulator for the reservation service: a CLI and an asyncio library.

Example::

    async with SimulatedCharger("CP-1", "ws://127.0.0.1:9000/ocpp", "secret", "2.0.1") as cp:
        await cp.wait_connected()
        await cp.wait_for(lambda c: c.port(1).status == PortStatus.RESERVED)
"""

from simulator._ocpp import LinkClosed, RemoteCallError
from simulator.behaviour import Behaviour, NoReservationSupport
from simulator.charger import ChargerOffline, ConnectionState, SimulatedCharger, Unauthorized
from simulator.fleet import Fleet, fleet_ids
from simulator.state import (
    EndReason,
    Port,
    PortError,
    PortStatus,
    Reservation,
    ReserveStatus,
    SimulatorError,
    Transaction,
    UnknownReservation,
    Version,
)

__all__ = [
    "Behaviour",
    "ChargerOffline",
    "ConnectionState",
    "EndReason",
    "Fleet",
    "LinkClosed",
    "NoReservationSupport",
    "Port",
    "PortError",
    "PortStatus",
    "RemoteCallError",
    "Reservation",
    "ReserveStatus",
    "SimulatedCharger",
    "SimulatorError",
    "Transaction",
    "Unauthorized",
    "UnknownReservation",
    "Version",
    "fleet_ids",
]
