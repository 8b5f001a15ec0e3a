"""Swagger UI at /api/docs, rendered by a real browser (Debian's headless Chromium) against the local API.

The browser may reach 127.0.0.1 only (every other host name resolves to nothing), so a
page that leaned on a CDN would not render. The screenshot of the rendered page is kept
under ``.cache/test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import REPO_ROOT
from devstack.local_api import LocalApi

ARTIFACTS = REPO_ROOT / ".cache" / "test-artifacts"
#: How long the page's scripts may run (virtual time: Chromium fast-forwards idle waits).
RENDER_BUDGET_MS = 20_000
_OPERATION = re.compile(r'opblock-summary-method">(GET|POST|PATCH|DELETE)</span>.*?data-path="([^"]+)"', re.DOTALL)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed (make system-deps, or: apt-get install chromium)"
    return found


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        # Nothing but the local API: a CDN asset would fail to load.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--virtual-time-budget={RENDER_BUDGET_MS}",
    ]
    return subprocess.run([chromium(), *flags, *extra, url], capture_output=True, text=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def rendered(local_api: LocalApi, tmp_path_factory: pytest.TempPathFactory) -> str:
    done = browse(f"{local_api.url}/api/docs", tmp_path_factory.mktemp("chromium"), "--dump-dom")
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_page_renders_the_reservation_operations(rendered: str):
    """Swagger UI ran (its operations are in the DOM, not only in the embedded spec) with the API's own paths."""
    operations = set(_OPERATION.findall(rendered))
    assert {
        ("POST", "/api/ocpp/reservations"),
        ("POST", "/api/ocpp/reservations/cancel"),
        ("GET", "/api/ocpp/reservations/{reservationId}"),
        ("GET", "/api/ocpp/reservations"),
    } <= operations, sorted(operations)
    assert 'class="swagger-ui' in rendered
    assert "EV charging reservations API" in rendered


def test_a_screenshot_of_the_page_is_kept(local_api: LocalApi, tmp_path: Path):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "swagger-ui.png"
    target.unlink(missing_ok=True)
    done = browse(
        f"{local_api.url}/api/docs", tmp_path / "profile", "--window-size=1280,1600", f"--screenshot={target}"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert target.stat().st_size > 20_000, "a blank page is a few kB"
