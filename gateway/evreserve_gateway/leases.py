"""The home of instance leases: this instance's heartbeat, and reaping the instances that died.

Every instance renews its lease (``evreserve.storage.instances``) every
``GATEWAY_LEASE_RENEW_S`` and, in the same beat, looks for leases that lapsed. A
lapsed lease is an instance that was killed (SIGKILL, a lost host) and can no longer
say its chargers left: its chargers would show Connected forever and every command to
them would wait out its deadline on a queue nobody reads. The reaper marks those
chargers Disconnected (only where the registry still names the dead instance: one that
reconnected elsewhere is untouched), deletes the dead queue, then the lease. Any number
of instances may reap at once: every step is conditional or idempotent.

An instance that finds its own lease gone was taken for dead (it could not renew, e.g.
through a DynamoDB outage longer than the lease): it writes its connections again, and
its queue poll re-creates its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from evreserve.models import utcnow
from evreserve.storage.instances import InstanceStore, Lease, lease_until
from evreserve.storage.registry import RegistryStore

from .commands.queue import InstanceQueue
from .offload import Offload
from .settings import GatewaySettings

log = logging.getLogger("evreserve_gateway")


class Leases:
    def __init__(
        self,
        settings: GatewaySettings,
        instances: InstanceStore,
        registry: RegistryStore,
        queue: InstanceQueue,
        io: Offload,
        stopping: asyncio.Event,
        *,
        queue_url: Callable[[], str],
        register_again: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._instances = instances
        self._registry = registry
        self._queue = queue
        self._io = io
        self._stopping = stopping
        self._queue_url = queue_url
        self._register_again = register_again
        self._held: Lease | None = None

    async def renew(self) -> None:
        """Write this instance's lease (once at start, then every beat)."""
        s = self._settings
        lease = Lease(s.instance_id, self._queue_url(), lease_until(utcnow(), s.gateway_lease_s))
        existed = await self._io(self._instances.renew, lease)
        if self._held is not None and not existed:
            log.warning("this instance was taken for dead and reaped; registering its connections again")
            await self._register_again()
        self._held = lease

    async def run(self) -> None:
        """Renew, and reap the lapsed, every beat until the gateway stops."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.gateway_lease_renew_s)
            if self._stopping.is_set():
                return
            try:
                await self.renew()
                await self.reap()
            except Exception:
                log.exception("could not renew the lease or reap lapsed instances; retrying next beat")

    async def reap(self) -> None:
        now = utcnow()
        for lease in await self._io(self._instances.leases):
            if lease.instance_id != self._settings.instance_id and lease.lapsed(now):
                await self._reap(lease)

    async def _reap(self, lease: Lease) -> None:
        extra = {"deadInstance": lease.instance_id, "queueUrl": lease.queue_url}
        charger_ids = await self._io(self._registry.chargers_on_instance, lease.instance_id)
        released = 0
        for charger_id in charger_ids:
            released += await self._io(self._registry.release_instance, charger_id, lease.instance_id, utcnow())
        await self._io(self._queue.delete_queue, lease.queue_url)
        removed = await self._io(self._instances.remove, lease)
        log.warning(
            "reaped an instance whose lease lapsed" if removed else "a lapsed instance renewed its lease meanwhile",
            extra={**extra, "chargersDisconnected": released},
        )

    async def release(self) -> None:
        """On a clean stop: give the lease up (the chargers were deregistered, the queue deleted)."""
        if self._held is None:
            return
        try:
            await self._io(self._instances.remove, self._held)
        except Exception:
            log.exception("could not remove the lease; it lapses by itself")
