"""OCPP 1.6: the home of the handlers of the CALLs a 1.6 charger sends.

Deliberately parallel to ``v201`` (the 2.0.1 handlers), not shared with it: each
version has its own payload classes and field names (``idTag`` / ``idToken``,
``connectorId`` / ``evseId``, StartTransaction / TransactionEvent), so a change to one
version's handler is checked against the other's by reading, not by abstraction.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ocpp.v16 import call_result as v16_result

from evreserve.models import OcppVersion, utcnow
from evreserve.ocpp_mapping import ocpp_datetime

from .. import charger_messages as msgs
from .framing import current_time
from .library import on
from .session import EMPTY_ANSWER, DirectHandler, OcppSession, answer_empty


class V16Session(OcppSession):
    version = OcppVersion.V16

    @on("BootNotification")
    def on_boot_notification(self, **kwargs: Any) -> Any:
        now = utcnow()
        self.events.record_boot(msgs.boot_info_v16(kwargs, now))
        return v16_result.BootNotification(
            current_time=ocpp_datetime(now), interval=self.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return v16_result.Heartbeat(current_time=current_time())

    def _status_notification(self, payload: dict[str, Any]) -> str:
        self.events.record_port_status(*msgs.port_status_v16(payload, utcnow()))
        return EMPTY_ANSWER

    @on("Authorize")
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> Any:
        return v16_result.Authorize(id_tag_info=msgs.id_tag_info_v16(await self.events.authorize(id_tag)))

    @on("StartTransaction")
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, reservation_id: int | None = None, **kwargs: Any
    ) -> Any:
        # The charger has ended the reservation by starting with it, whatever the token's
        # verdict (a Blocked answer stops the transaction, not the reservation's end).
        if reservation_id is not None:
            self.events.record_reservation_used(reservation_id, connector_id or None)
        verdict = await self.events.authorize(id_tag)
        return v16_result.StartTransaction(
            transaction_id=self.events.new_transaction_id(), id_tag_info=msgs.id_tag_info_v16(verdict)
        )

    @on("StopTransaction")
    def on_stop_transaction(self, id_tag: str | None = None, **kwargs: Any) -> Any:
        return v16_result.StopTransaction(id_tag_info={"status": "Accepted"} if id_tag is not None else None)

    _direct: ClassVar[dict[str, DirectHandler]] = {
        "MeterValues": answer_empty,
        "StatusNotification": _status_notification,
    }

    @on("DataTransfer")
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return v16_result.DataTransfer(status="UnknownVendorId")

    @on("DiagnosticsStatusNotification")
    def on_diagnostics_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.DiagnosticsStatusNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.FirmwareStatusNotification()

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **kwargs: Any) -> Any:
        self.log.info("security event", extra={"event": kwargs.get("type"), "info": kwargs.get("tech_info")})
        return v16_result.SecurityEventNotification()

    @on("SignedFirmwareStatusNotification")
    def on_signed_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.SignedFirmwareStatusNotification()

    @on("LogStatusNotification")
    def on_log_status_notification(self, **kwargs: Any) -> Any:
        return v16_result.LogStatusNotification()
