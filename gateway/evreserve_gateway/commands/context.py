"""What every gateway log line about a command says of it."""

from __future__ import annotations

from evreserve.models import Command


def command_context(command: Command) -> dict[str, str]:
    """The keys of every log line about a command: it, its charger, and the API request it came from.

    ``correlation_id`` / ``xray_trace_id`` are the keys Powertools gives the same values on
    the function's lines (evreserve.correlation): one Logs Insights filter finds both.
    """
    context = {"commandId": command.command_id, "charger": command.ocpp_id, "action": command.action.value}
    if command.correlation_id:
        context["correlation_id"] = command.correlation_id
    if command.xray_trace_id:
        context["xray_trace_id"] = command.xray_trace_id
    return context
