"""``python -m evreserve_gateway``: run one gateway instance until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable

from .bootstrap import bootstrap
from .gateway import Gateway
from .logs import configure_logging
from .settings import GatewaySettings, ecs_task_id


async def run(settings: GatewaySettings) -> None:
    gateway = Gateway(settings, bootstrap(settings))
    await gateway.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await gateway.stop()


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def main() -> None:
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    try:
        # On ECS the task id is the instance id (see ecs_task_id); INSTANCE_ID wins if set.
        task_id = ecs_task_id(os.environ)
        settings = (
            GatewaySettings.from_environment(instance_id=task_id) if task_id else GatewaySettings.from_environment()
        )
    except Exception:
        logging.getLogger("evreserve_gateway").exception("invalid settings")
        raise SystemExit(2) from None
    # The process's own setting, so here and not in Gateway (tests run several in one process).
    sys.setswitchinterval(settings.gateway_switch_interval_s)
    with asyncio.Runner(loop_factory=loop_factory(settings.gateway_event_loop)) as runner:
        runner.run(run(settings))


if __name__ == "__main__":
    main()
