"""OCPP 2.0.1: the home of the handlers of the CALLs a 2.0.1 charging station sends.

Deliberately parallel to ``v16`` (the 1.6 handlers), not shared with it: each version
has its own payload classes and field names (``idToken`` / ``idTag``, ``evseId`` /
``connectorId``, TransactionEvent / StartTransaction), so a change to one version's
handler is checked against the other's by reading, not by abstraction.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ocpp.v201 import call_result as v201_result

from evreserve.models import OcppVersion, utcnow
from evreserve.ocpp_mapping import ocpp_datetime

from .. import charger_messages as msgs
from .framing import current_time
from .library import on
from .session import EMPTY_ANSWER, DirectHandler, OcppSession, answer_empty


class V201Session(OcppSession):
    version = OcppVersion.V201

    @on("BootNotification")
    def on_boot_notification(self, charging_station: dict[str, Any], **kwargs: Any) -> Any:
        now = utcnow()
        self.events.record_boot(msgs.boot_info_v201(charging_station, now))
        return v201_result.BootNotification(
            current_time=ocpp_datetime(now), interval=self.heartbeat_s, status="Accepted"
        )

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return v201_result.Heartbeat(current_time=current_time())

    def _status_notification(self, payload: dict[str, Any]) -> str:
        self.events.record_port_status(*msgs.port_status_v201(payload, utcnow()))
        return EMPTY_ANSWER

    @on("Authorize")
    async def on_authorize(self, id_token: dict[str, Any], **kwargs: Any) -> Any:
        verdict = await self.events.authorize(str(id_token.get("id_token", "")))
        return v201_result.Authorize(id_token_info=msgs.id_token_info_v201(verdict))

    @on("TransactionEvent")
    async def on_transaction_event(
        self,
        reservation_id: int | None = None,
        id_token: dict[str, Any] | None = None,
        evse: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        if reservation_id is not None:
            self.events.record_reservation_used(reservation_id, (evse or {}).get("id") or None)
        if id_token is None:
            return v201_result.TransactionEvent()
        verdict = await self.events.authorize(str(id_token.get("id_token", "")))
        return v201_result.TransactionEvent(id_token_info=msgs.id_token_info_v201(verdict))

    @on("ReservationStatusUpdate")
    def on_reservation_status_update(self, reservation_id: int, reservation_update_status: str, **kwargs: Any) -> Any:
        self.events.record_reservation_status_update(reservation_id, reservation_update_status)
        return v201_result.ReservationStatusUpdate()

    _direct: ClassVar[dict[str, DirectHandler]] = {
        "MeterValues": answer_empty,
        "StatusNotification": _status_notification,
    }

    @on("DataTransfer")
    def on_data_transfer(self, **kwargs: Any) -> Any:
        return v201_result.DataTransfer(status="UnknownVendorId")

    @on("SecurityEventNotification")
    def on_security_event_notification(self, **kwargs: Any) -> Any:
        self.log.info("security event", extra={"event": kwargs.get("type"), "info": kwargs.get("tech_info")})
        return v201_result.SecurityEventNotification()

    @on("FirmwareStatusNotification")
    def on_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v201_result.FirmwareStatusNotification()

    @on("NotifyEvent")
    def on_notify_event(self, **kwargs: Any) -> Any:
        return v201_result.NotifyEvent()

    @on("NotifyReport")
    def on_notify_report(self, **kwargs: Any) -> Any:
        return v201_result.NotifyReport()

    @on("LogStatusNotification")
    def on_log_status_notification(self, **kwargs: Any) -> Any:
        return v201_result.LogStatusNotification()

    @on("NotifyMonitoringReport")
    def on_notify_monitoring_report(self, **kwargs: Any) -> Any:
        return v201_result.NotifyMonitoringReport()

    @on("NotifyCustomerInformation")
    def on_notify_customer_information(self, **kwargs: Any) -> Any:
        return v201_result.NotifyCustomerInformation()

    @on("NotifyDisplayMessages")
    def on_notify_display_messages(self, **kwargs: Any) -> Any:
        return v201_result.NotifyDisplayMessages()

    @on("NotifyChargingLimit")
    def on_notify_charging_limit(self, **kwargs: Any) -> Any:
        return v201_result.NotifyChargingLimit()

    @on("ClearedChargingLimit")
    def on_cleared_charging_limit(self, **kwargs: Any) -> Any:
        return v201_result.ClearedChargingLimit()

    @on("ReportChargingProfiles")
    def on_report_charging_profiles(self, **kwargs: Any) -> Any:
        return v201_result.ReportChargingProfiles()

    @on("PublishFirmwareStatusNotification")
    def on_publish_firmware_status_notification(self, **kwargs: Any) -> Any:
        return v201_result.PublishFirmwareStatusNotification()
