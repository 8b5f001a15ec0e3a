"""Lambda SnapStart: what a function does before its snapshot is taken, and after each restore.

With SnapStart (template.yaml, parameter ``LambdaSnapStart``), Lambda runs a version's
initialisation once, snapshots the memory, and starts later instances from copies of
it: a cold start no longer pays the imports. What goes into the snapshot should
therefore be all a first request would build anyway, and nothing that must differ
between the copies.

Before the snapshot (``prime``): the function's services are built (settings read, the
AWS clients created; under ``AWS_CLIENT=botocore`` also botocore's service models and
endpoint rules loaded, 80-140 ms otherwise paid by the first request). No network call
is made, so the snapshot holds no open connection (evreserve.awsjson opens its pool's
first one at the first request); credentials are not in it either: awsjson reads the
environment's keys per request, and where the runtime gives none it falls back to
botocore's provider chain (the container credentials endpoint), refreshed by botocore.

After each restore (``refresh``): Python's ``random`` is reseeded from the OS, or every
copy would draw the same sequence (the clients' retry jitter uses it; ids and keys come
from ``secrets`` / ``uuid4``, i.e. the OS, and need nothing). Nothing else the functions
keep is tied to one instance: settings are the same in every copy, and the port and
charger memories (``evreserve.services.memory``) are empty in the snapshot.

Outside SnapStart (``AWS_LAMBDA_INITIALIZATION_TYPE`` is not ``snap-start``: on-demand
Lambda, the local stack, the tests) nothing is registered and nothing is primed.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

#: The value Lambda gives ``AWS_LAMBDA_INITIALIZATION_TYPE`` during a SnapStart init.
SNAP_START = "snap-start"


def refresh() -> None:
    random.seed()


def install(prime: Callable[[], Any] | None = None) -> bool:
    """Register the hooks when this initialisation is a SnapStart one; whether it did."""
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") != SNAP_START:
        return False
    # Part of the Python managed runtimes; imported only here, where it exists.
    from snapshot_restore_py import register_after_restore, register_before_snapshot

    if prime is not None:
        register_before_snapshot(_primed, prime)
    register_after_restore(refresh)
    return True


def _primed(prime: Callable[[], Any]) -> None:
    try:
        prime()
    except Exception:
        # A snapshot without the services is slower on its first request, not broken:
        # the request builds them (and reports what fails then).
        log.exception("could not build the services before the snapshot; the first request will")
