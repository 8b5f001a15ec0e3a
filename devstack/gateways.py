"""Gateway instances as child processes, as ECS runs them: ``python -m evreserve_gateway``.

Used by ``make run`` and by the end-to-end tests, which stop them with SIGTERM (graceful
drain) or SIGKILL (a crashed task) while commands are in flight.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from devstack import HOST


@dataclass
class GatewayProcess:
    instance_id: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "evreserve_gateway"],
            env={**env, "GATEWAY_HOST": HOST, "GATEWAY_PORT": str(self.port), "INSTANCE_ID": self.instance_id},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def wait_healthy(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://{HOST}:{self.port}/health"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"gateway {self.instance_id} exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError(f"gateway {self.instance_id} did not become healthy; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL: a crashed task. Nothing is drained or deregistered."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM first: the gateway drains (closes chargers with 1012, finishes commands)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
