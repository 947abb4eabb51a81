"""Networking: bounded keep-alive HTTP load from the host against a target's forwarded port."""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass

from pytest_vmcontainer.comparison.probes.context import Measured, ProbeContext
from pytest_vmcontainer.errors import ProbeError
from pytest_vmcontainer.runtime.waiting import LOOPBACK
from pytest_vmcontainer.targets.base import Target


@dataclass
class LoadResult:
    latencies: list[float]
    errors: int
    seconds: float
    client_cpu_seconds: float


def http_load(port: int, requests: int, seconds: float, concurrency: int,
              path: str = "/") -> LoadResult:
    """Keep-alive GETs against 127.0.0.1:port from ``concurrency`` threads.

    Bounded twice: at most ``requests`` requests and at most ``seconds`` seconds.
    """
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]
    issued = [0]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if issued[0] >= requests:
                        return
                    issued[0] += 1
                started = time.perf_counter()
                try:
                    connection.request("GET", path)
                    response = connection.getresponse()
                    response.read()
                    ok = response.status == 200
                except (OSError, http.client.HTTPException):
                    ok = False
                    connection.close()
                    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1
        finally:
            connection.close()

    cpu_before, wall_before = time.process_time(), time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"load-{i}") for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(latencies, errors[0], time.perf_counter() - wall_before,
                      time.process_time() - cpu_before)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe_http(ctx: ProbeContext, target: Target) -> Measured:
    settings = ctx.settings
    port = target.address(target.spec.guest_ports[0])[1]
    results: list[LoadResult] = []
    ctx.timer(lambda: results.append(http_load(port, settings.http_requests,
                                               settings.http_seconds,
                                               settings.http_concurrency)), rounds=1, warmup=0)
    load = results[-1]
    if not load.latencies:
        raise ProbeError(f"no successful request to the {target.kind} ({load.errors} errors)",
                         "check that the app still serves on its first forwarded port")
    client_cpu = 100.0 * load.client_cpu_seconds / load.seconds
    return {"requests": len(load.latencies), "errors": load.errors,
            "seconds": round(load.seconds, 2), "rps": len(load.latencies) / load.seconds,
            "p50_ms": 1000 * _percentile(load.latencies, 0.50),
            "p90_ms": 1000 * _percentile(load.latencies, 0.90),
            "p99_ms": 1000 * _percentile(load.latencies, 0.99),
            "concurrency": settings.http_concurrency, "client_cpu_percent": client_cpu,
            "client_saturated": client_cpu >= 90.0}, None


