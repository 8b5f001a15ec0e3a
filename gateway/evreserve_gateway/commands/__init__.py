"""The commands queued for this instance's chargers: the queue (``queue``) and their execution (``runner``)."""

from .queue import CommandQueue, Deletions, InstanceQueue, Received
from .runner import CommandRunner

__all__ = ["CommandQueue", "CommandRunner", "Deletions", "InstanceQueue", "Received"]
