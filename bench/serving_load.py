"""Loopback load on ``twinflow serve``: throughput and latency per framework, and the server's overhead.

For each framework, at 1 and 8 concurrent clients and batch 1 and 32, it sends a bounded
number of TF Serving REST predict requests (``serving_image_bytes``, keep-alive connections)
to a server without micro-batching and then makes the same calls to the same model in this
process, with as many threads (the server's input checks included); then batch 1 again to a
server with micro-batching (``twinflow serve``'s default). The overhead is the difference in p50 and p99 latency,
and the throughput ratio served ÷ in process, measured in one run (machines are noisy). CPU
time per request (the server's process, the load generator's, and the in-process calls')
is steadier than latency on a busy machine.

    .venv/bin/python bench/serving_load.py [--serving-dir work/serving] [--requests 200] [--seconds 30]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _images(data_dir: Path, count: int) -> list[bytes]:
    files = sorted(data_dir.rglob("*.png"))[:count]
    if len(files) < count:
        raise SystemExit(f"need {count} PNG images under {data_dir}; run 'make data' first")
    return [f.read_bytes() for f in files]


def _load(call: Callable[[], None], clients: int, requests: int, seconds: float) -> tuple[list[float], float]:
    """Latencies of ``requests`` calls spread over ``clients`` threads (stopping at ``seconds``), and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    remaining = [requests]

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            start = time.perf_counter()
            call()
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - start


def _http_caller(port: int, model: str, body: bytes) -> Callable[[], None]:
    local = threading.local()

    def call() -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        local.connection.request("POST", f"/v1/models/{model}:predict", body, {"Content-Type": "application/json"})
        response = local.connection.getresponse()
        content = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {content[:300]!r}")

    return call


def _start_server(serving_dir: str, *extra: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "twinflow.pipelines.cli",
        "serve",
        "--serving-dir",
        serving_dir,
        "--port",
        str(port),
    ]
    server = subprocess.Popen([*command, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/v2/health/ready")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise SystemExit("the server did not become ready")
        time.sleep(0.5)


def _body(values: list[bytes]) -> bytes:
    instances = [{"b64": base64.b64encode(v).decode()} for v in values]
    return json.dumps({"signature_name": "serving_image_bytes", "instances": instances}).encode()


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of this process, or of process ``pid`` (Linux /proc)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _served(server: subprocess.Popen, port: int, framework: str, body: bytes, clients: int, args) -> tuple:
    """(latencies, wall seconds, server CPU seconds, client CPU seconds) of one measurement."""
    call = _http_caller(port, framework, body)
    _load(call, clients, clients * 3, args.seconds)  # warm the connections
    server_cpu, client_cpu = _cpu_seconds(server.pid), _cpu_seconds()
    latencies, wall = _load(call, clients, args.requests, args.seconds)
    return latencies, wall, _cpu_seconds(server.pid) - server_cpu, _cpu_seconds() - client_cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serving-dir", default="work/serving")
    parser.add_argument("--data-dir", default="work/data/fashion_mnist/test")
    parser.add_argument("--requests", type=int, default=200, help="requests per measurement (bounded)")
    parser.add_argument("--seconds", type=float, default=30, help="time limit per measurement")
    parser.add_argument("--batch-window-ms", type=float, default=2.0, help="micro-batching window compared")
    args = parser.parse_args()

    from twinflow.core.bootstrap import bootstrap

    bootstrap()
    from twinflow.model_store.layout import served_version
    from twinflow.serving.inputs import PixelLimits, prepare_inputs
    from twinflow.serving.models import ServedModel, load_version

    images = _images(Path(args.data_dir), 32)
    limits = PixelLimits(64_000_000, 64_000_000)  # the server's defaults
    frameworks = [f for f in ("keras", "lightning") if served_version(str(Path(args.serving_dir) / f))]
    rows, batched_rows = [], []
    server, port = _start_server(args.serving_dir, "--batch-window-ms", "0")  # micro-batching off
    try:
        for framework in frameworks:
            model = load_version(served_version(str(Path(args.serving_dir) / framework)).path)
            model.warm_up()
            for batch in (1, 32):
                values = images[:batch]

                def in_process(values: list[bytes] = values, model: ServedModel = model) -> None:
                    values, _ = prepare_inputs("serving_image_bytes", values, limits)
                    model.predict("serving_image_bytes", values)

                for clients in (1, 8):
                    served, wall, server_cpu, client_cpu = _served(
                        server, port, framework, _body(values), clients, args
                    )
                    local_cpu = _cpu_seconds()
                    local, local_wall = _load(in_process, clients, args.requests, args.seconds)
                    local_cpu = _cpu_seconds() - local_cpu
                    p50, p99 = np.percentile(served, [50, 99]) * 1000
                    l50, l99 = np.percentile(local, [50, 99]) * 1000
                    rate, local_rate = len(served) * batch / wall, len(local) * batch / local_wall
                    cpu = [
                        1000 * server_cpu / len(served),
                        1000 * client_cpu / len(served),
                        1000 * local_cpu / len(local),
                    ]
                    rows.append((framework, clients, batch, rate, local_rate, p50, p99, p50 - l50, p99 - l99, *cpu))
                    print(f"{framework} clients {clients} batch {batch}: {rate:.0f} images/s", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=60)
    server, port = _start_server(args.serving_dir, "--batch-window-ms", str(args.batch_window_ms))
    try:
        for framework in frameworks:
            for clients in (1, 8):
                served, wall, _, _ = _served(server, port, framework, _body(images[:1]), clients, args)
                p50, p99 = np.percentile(served, [50, 99]) * 1000
                plain = next(r for r in rows if r[:3] == (framework, clients, 1))
                batched_rows.append((framework, clients, len(served) / wall, p50, p99, plain))
    finally:
        server.terminate()
        server.wait(timeout=60)

    print(
        "\n| framework | clients | batch | images/s | in process | served ÷ in process | p50 ms | p99 ms "
        "| overhead p50 ms | overhead p99 ms | CPU ms/request: server + client (in process) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for framework, clients, batch, rate, local_rate, p50, p99, o50, o99, s_cpu, c_cpu, l_cpu in rows:
        print(
            f"| {framework} | {clients} | {batch} | {rate:.0f} | {local_rate:.0f} | {rate / local_rate:.2f} "
            f"| {p50:.1f} | {p99:.1f} | {o50:.1f} | {o99:.1f} | {s_cpu:.2f} + {c_cpu:.2f} ({l_cpu:.2f}) |"
        )
    print(f"\nMicro-batching (--batch-window-ms {args.batch_window_ms:g}), batch 1:")
    print(
        "| framework | clients | images/s off | images/s on | on ÷ off | on ÷ in process "
        "| p50 ms off → on | p99 ms off → on |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for framework, clients, rate, p50, p99, plain in batched_rows:
        print(
            f"| {framework} | {clients} | {plain[3]:.0f} | {rate:.0f} | {rate / plain[3]:.2f} | {rate / plain[4]:.2f} "
            f"| {plain[5]:.1f} → {p50:.1f} | {plain[6]:.1f} → {p99:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
