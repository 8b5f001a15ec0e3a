"""The commands queued for this instance's chargers: the queue (``queue``) and their execution (``runner``)."""

from .queue import CommandQueue, InstanceQueue, Received, Redeliveries
from .runner import CommandRunner

__all__ = ["CommandQueue", "CommandRunner", "InstanceQueue", "Received", "Redeliveries"]
