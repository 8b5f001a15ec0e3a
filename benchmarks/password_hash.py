"""What a charger's login costs the gateway: one password hash check, former scrypt against Argon2id.

    .venv/bin/python benchmarks/password_hash.py [--rounds 40] [--threads 4]

Measured side by side in one run, interleaved (the machine is shared): the median and p90
of one check of each scheme, the checks per second ``--threads`` auth threads sustain
(Argon2id and scrypt both release the GIL), the memory each check holds, and what that
means for readmitting a fleet after a restart, when every password charger pays one check
on the instance it lands on (docs/gateway.md, "Failed logins" and the password cache).
Prints a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from evreserve.security import hash_password, scrypt_hash, verify_password

PASSWORD = "correct-horse-battery-staple"  # noqa: S105 - the benchmark's own, hashed here and nowhere else
FLEETS = (1_000, 10_000, 50_000)
#: What one check holds: Argon2id's m (OWASP: 19 MiB), scrypt's 128 * N * r bytes.
MEMORY_MIB = {"argon2id": 19, "scrypt": 16}


def timed(check: Callable[[], bool]) -> float:
    started = time.perf_counter()
    assert check()
    return time.perf_counter() - started


def throughput(check: Callable[[], bool], threads: int, checks: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        assert all(pool.map(lambda _: check(), range(checks)))
    return checks / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--threads", type=int, default=4, help="the gateway's GATEWAY_AUTH_THREADS")
    args = parser.parse_args()
    stored = {"argon2id": hash_password(PASSWORD), "scrypt": scrypt_hash(PASSWORD)}
    checks = {name: (lambda h=h: verify_password(PASSWORD, h)) for name, h in stored.items()}
    samples: dict[str, list[float]] = {name: [] for name in checks}
    for _ in range(args.rounds):
        for name, check in checks.items():  # interleaved: both see the same machine
            samples[name].append(timed(check))
    rates = {name: throughput(check, args.threads, args.rounds) for name, check in checks.items()}
    result: dict[str, object] = {"rounds": args.rounds, "threads": args.threads}
    print(f"{'scheme':10} {'p50 ms':>8} {'p90 ms':>8} {'checks/s':>9} {'MiB':>4}  readmission of 1k / 10k / 50k")
    for name, values in samples.items():
        p50 = statistics.median(values) * 1000
        p90 = statistics.quantiles(values, n=10)[-1] * 1000
        readmit = [fleet / rates[name] for fleet in FLEETS]
        minutes = " / ".join(f"{s / 60:.1f} min" for s in readmit)
        print(f"{name:10} {p50:8.1f} {p90:8.1f} {rates[name]:9.1f} {MEMORY_MIB[name]:4}  {minutes}")
        result[name] = {
            "p50_ms": round(p50, 2),
            "p90_ms": round(p90, 2),
            "checks_per_s": round(rates[name], 1),
            "readmission_s": dict(zip(map(str, FLEETS), (round(s) for s in readmit), strict=True)),
        }
    ratio = statistics.median(samples["argon2id"]) / statistics.median(samples["scrypt"])
    result["argon2id_over_scrypt_p50"] = round(ratio, 2)
    print(f"Argon2id / scrypt, median check: {ratio:.2f}x")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
