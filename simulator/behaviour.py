"""How a simulated charger (or one of its ports) misbehaves, for demos and tests."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from simulator.state import ReserveStatus


class NoReservationSupport(StrEnum):
    """The CALLERROR code a charger without reservation support answers with.

    OCPP-J 1.6 defines NotSupported as "recognized but not supported", which is the
    correct answer; chargers built on the `ocpp` library answer NotImplemented.
    """

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"


@dataclass(frozen=True)
class Behaviour:
    """Knobs for one charger, or one port when given per port.

    answer_delay, never_answer and no_reservations apply to ReserveNow and
    CancelReservation; drop_on_reserve to ReserveNow only. The per-port value is
    used when the command names a port (or, for CancelReservation, when the
    reservation is on a port); reserve_connector_zero and non_evse_specific are
    read from the charger-wide behaviour only.
    """

    reserve_answer: ReserveStatus | None = None
    """Answer this to every ReserveNow. Accepted stores the reservation even where
    a real charger would refuse; any other status changes nothing."""
    no_reservations: NoReservationSupport | None = None
    answer_delay: float = 0.0
    never_answer: bool = False
    drop_on_reserve: bool = False
    reserve_connector_zero: bool = False
    """1.6 `ReserveConnectorZeroSupported`: accept ReserveNow with connectorId 0."""
    non_evse_specific: bool = False
    """2.0.1 `ReservationCtrlr.NonEvseSpecific`: accept ReserveNow without evseId."""

    def __post_init__(self) -> None:
        if self.answer_delay < 0:
            raise ValueError("answer_delay must not be negative")
