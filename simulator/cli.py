"""The `evreserve-simulator` command: a fleet of simulated chargers with a live view."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table
from rich.text import Text

from simulator.behaviour import Behaviour, NoReservationSupport
from simulator.charger import ConnectionState
from simulator.fleet import Fleet, fleet_ids
from simulator.state import PortStatus, ReserveStatus, SimulatorError

HELP = (
    "start <id> <port> <idTag> | stop <id> <port> | status <id> <port> <Status> | "
    "remove <id> <reservationId> | drop <id> | help | quit"
)

_STATUS_STYLE = {
    PortStatus.AVAILABLE: "green",
    PortStatus.RESERVED: "bold cyan",
    PortStatus.FAULTED: "bold red",
    PortStatus.UNAVAILABLE: "dim",
}
_LINK_STYLE = {ConnectionState.ONLINE: "green", ConnectionState.BOOTING: "yellow"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evreserve-simulator",
        description="Simulated OCPP 1.6 / 2.0.1 chargers that answer ReserveNow and CancelReservation.",
    )
    parser.add_argument("--url", required=True, help="gateway endpoint, e.g. ws://127.0.0.1:9000/ocpp")
    parser.add_argument("--id", default="CP-1", help="charger identity (the first one with --count)")
    parser.add_argument("--password", help="HTTP Basic password (username = identity); none if omitted")
    parser.add_argument("--ca", help="wss://: the CA (PEM) that issued the gateway's certificate")
    parser.add_argument("--cert", help="security profile 3: the charger's client certificate (PEM)")
    parser.add_argument("--key", help="security profile 3: the key of --cert (PEM)")
    parser.add_argument("--version", choices=["1.6", "2.0.1"], default="1.6")
    parser.add_argument("--ports", type=int, default=2, help="connectors (1.6) / EVSEs (2.0.1) per charger")
    parser.add_argument("--count", type=int, default=1, help="run N chargers, ids counting up from --id")
    parser.add_argument("--heartbeat", type=float, help="heartbeat interval in s (default: from the boot answer)")
    parser.add_argument(
        "--reserve-answer", choices=[s.value for s in ReserveStatus], help="answer every ReserveNow with this"
    )
    parser.add_argument(
        "--no-reservations",
        choices=["notimplemented", "notsupported"],
        help="no reservation support: answer ReserveNow/CancelReservation with this CALLERROR",
    )
    parser.add_argument("--delay", type=float, default=0.0, help="answer reservation commands after N seconds")
    parser.add_argument("--never-answer", action="store_true", help="never answer reservation commands")
    parser.add_argument("--drop-on-reserve", action="store_true", help="drop the connection on ReserveNow")
    parser.add_argument("--connector-zero", action="store_true", help="1.6: accept reservations on connector 0")
    parser.add_argument("--non-evse-specific", action="store_true", help="2.0.1: accept ReserveNow without evseId")
    parser.add_argument("--no-live", action="store_true", help="plain log lines even on a terminal")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="-v: a line per frame, -vv: full JSON")
    return parser


def tls_from(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The TLS context for wss:// URLs: --ca to trust the gateway, --cert/--key for profile 3."""
    if (args.cert is None) != (args.key is None):
        raise ValueError("--cert and --key go together")
    if args.ca is None and args.cert is None:
        return None
    context = ssl.create_default_context(cafile=args.ca)
    if args.cert is not None:
        context.load_cert_chain(args.cert, args.key)
    return context


def behaviour_from(args: argparse.Namespace) -> Behaviour:
    no_support = {
        "notimplemented": NoReservationSupport.NOT_IMPLEMENTED,
        "notsupported": NoReservationSupport.NOT_SUPPORTED,
    }
    return Behaviour(
        reserve_answer=ReserveStatus(args.reserve_answer) if args.reserve_answer else None,
        no_reservations=no_support[args.no_reservations] if args.no_reservations else None,
        answer_delay=args.delay,
        never_answer=args.never_answer,
        drop_on_reserve=args.drop_on_reserve,
        reserve_connector_zero=args.connector_zero,
        non_evse_specific=args.non_evse_specific,
    )


# --- interactive commands -----------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    charger: str = ""
    port: int = 0
    arg: str = ""


def parse_command(line: str) -> Command | None:
    """Parse one line typed on stdin; None for a blank line, ValueError with a hint otherwise."""
    words = line.split()
    if not words:
        return None
    name, rest = words[0].lower(), words[1:]
    shapes: dict[str, int] = {"start": 3, "stop": 2, "status": 3, "remove": 2, "drop": 1, "help": 0, "quit": 0}
    if name == "exit":
        name = "quit"
    if name not in shapes:
        raise ValueError(f"unknown command {words[0]!r}; {HELP}")
    if len(rest) != shapes[name]:
        raise ValueError(f"{name} takes {shapes[name]} argument(s); {HELP}")
    if name in ("help", "quit"):
        return Command(name)
    if name == "drop":
        return Command(name, rest[0])
    if name == "remove":
        return Command(name, rest[0], arg=str(_number(rest[1], "reservationId")))
    port = _number(rest[1], "port")
    if name == "status":
        matches = [s for s in PortStatus if s.value.lower() == rest[2].lower()]
        if not matches:
            raise ValueError(f"unknown status {rest[2]!r}; one of {', '.join(s.value for s in PortStatus)}")
        return Command(name, rest[0], port, matches[0].value)
    return Command(name, rest[0], port, rest[2] if name == "start" else "")


def _number(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, not {text!r}") from None


async def execute(fleet: Fleet, command: Command) -> str:
    """Run a parsed command and say what happened."""
    if command.name == "help":
        return HELP
    try:
        charger = fleet[command.charger]
    except KeyError:
        return f"no charger {command.charger!r}"
    try:
        if command.name == "start":
            tx = await charger.start_transaction(command.port, command.arg)
            used = f", reservation {tx.reservation_id}" if tx.reservation_id is not None else ""
            return f"{charger.ocpp_id} port {command.port}: transaction {tx.transaction_id}{used}"
        if command.name == "stop":
            tx = await charger.stop_transaction(command.port)
            return f"{charger.ocpp_id} port {command.port}: transaction {tx.transaction_id} stopped"
        if command.name == "status":
            charger.set_port_status(command.port, command.arg)
            return f"{charger.ocpp_id} port {command.port}: {command.arg}"
        if command.name == "remove":
            charger.remove_reservation(int(command.arg))
            return f"{charger.ocpp_id}: reservation {command.arg} removed"
        charger.drop_connection()
        return f"{charger.ocpp_id}: connection dropped"
    except (SimulatorError, TimeoutError) as exc:
        return f"{command.name} failed: {exc}"


# --- display ------------------------------------------------------------------------


def render(fleet: Fleet, footer: str) -> Group:
    table = Table(title="EV charger simulator", expand=False)
    for column in ("Charger", "Link", "Port", "Status", "Reservation", "Expires in", "Transaction"):
        table.add_column(column)
    now = datetime.now(UTC)
    for charger in fleet:
        link = Text(str(charger.connection_state), style=_LINK_STYLE.get(charger.connection_state, "red"))
        unspecific = [r for r in charger.reservations.values() if r.port is None]
        for number, port in charger.ports.items():
            held = next((r for r in charger.reservations.values() if r.port == number), None)
            reservation = expires = ""
            if held is not None:
                reservation = f"#{held.id} {held.id_tag}" + (f" ({held.group_id_tag})" if held.group_id_tag else "")
                expires = f"{max(0, int((held.expires_at - now).total_seconds()))}s"
            tx = port.transaction
            table.add_row(
                f"{charger.ocpp_id} ({charger.version})" if number == 1 else "",
                link if number == 1 else "",
                str(number),
                Text(port.status.value, style=_STATUS_STYLE.get(port.status, "yellow")),
                reservation,
                expires,
                f"{tx.transaction_id} {tx.id_tag}" if tx is not None else "",
            )
        for held in unspecific:
            left = max(0, int((held.expires_at - now).total_seconds()))
            table.add_row("", "", "any", "", f"#{held.id} {held.id_tag}", f"{left}s", "")
    return Group(table, Text(footer, style="dim"))


def configure_logging(verbosity: int, console: Console | None) -> None:
    handler: logging.Handler
    if console is not None:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # The library logs every frame at INFO; frames are logged by simulator.frames instead.
    logging.getLogger("ocpp").setLevel(logging.WARNING)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    frame_level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.getLogger("simulator.frames").setLevel(frame_level)


# --- the command ----------------------------------------------------------------------


async def run(fleet: Fleet, console: Console | None) -> None:
    """Run `fleet` until Ctrl-C, SIGTERM or `quit`; with a console, as a live table."""
    live = console is not None
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
            loop.add_signal_handler(signum, stop.set)
    footer = [f"commands: {HELP}" if live else ""]
    pending: set[asyncio.Task[None]] = set()

    async def handle(line: str) -> None:
        try:
            command = parse_command(line)
        except ValueError as exc:
            footer[0] = str(exc)
            return
        if command is None:
            return
        if command.name == "quit":
            stop.set()
            return
        footer[0] = await execute(fleet, command)
        logging.getLogger("simulator").info("%s -> %s", line.strip(), footer[0])

    def on_stdin() -> None:
        line = sys.stdin.readline()
        if not line:  # EOF: stop listening, keep running
            loop.remove_reader(sys.stdin.fileno())
            return
        task = loop.create_task(handle(line))
        pending.add(task)
        task.add_done_callback(pending.discard)

    interactive = live and sys.stdin.isatty()
    if interactive:
        loop.add_reader(sys.stdin.fileno(), on_stdin)
    await fleet.start()
    try:
        if console is not None:
            render_now: Callable[[], Group] = lambda: render(fleet, footer[0])  # noqa: E731
            with Live(get_renderable=render_now, console=console, refresh_per_second=4, transient=False):
                await stop.wait()
        else:
            await stop.wait()
    finally:
        if interactive:
            loop.remove_reader(sys.stdin.fileno())
        for task in pending:
            task.cancel()
        await fleet.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count < 1 or args.ports < 1:
        parser.error("--count and --ports must be at least 1")
    if args.delay < 0:
        parser.error("--delay must not be negative")
    console = Console() if sys.stdout.isatty() and not args.no_live else None
    # Logging shares the live view's console so that log lines scroll above the table.
    configure_logging(args.verbose, console)
    try:
        fleet = Fleet.build(
            fleet_ids(args.id, args.count),
            args.url,
            password=args.password,
            tls=tls_from(args),
            version=args.version,
            ports=args.ports,
            behaviour=behaviour_from(args),
            heartbeat_interval=args.heartbeat,
        )
    except ValueError as exc:
        parser.error(str(exc))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(fleet, console))
    return 0
