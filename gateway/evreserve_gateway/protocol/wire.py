"""Writing a text frame to a charger's connection without websockets' per-frame async context.

``ServerConnection.send()`` enters an async context manager for every frame
(``send_context``: state checks, then a drain that waits only while the transport's
buffer is over its high-water mark); at 1,000 busy chargers that was ~20% of the
gateway's samples. When the connection is open, no fragmented send is in progress and
the transport is not paused, the context does exactly what ``send_now`` does: queue the
frame in the sans-I/O protocol and write what it produced. Otherwise ``send_now`` says
so and the caller uses ``send()``, which waits, closes or raises as websockets decides.
"""

from __future__ import annotations

from typing import Any

from websockets.protocol import State


def send_now(connection: Any, frame: str) -> bool:
    """Write ``frame`` at once if nothing could make ``connection.send(frame)`` wait; False: call that."""
    try:
        if (
            connection.send_in_progress is not None
            or connection.protocol.state is not State.OPEN
            or connection.paused
            or connection.transport.is_closing()
        ):
            return False
        protocol, write = connection.protocol, connection.send_data
    except AttributeError:  # not the websockets connection this was written against: the public path
        return False
    protocol.send_text(frame.encode())
    try:
        write()
    except Exception as exc:
        # What send_context does with a failed write: the connection is done for.
        connection.set_connection_exc(exc)
        connection.transport.abort()
    return True
