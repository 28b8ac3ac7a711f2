"""Hostile clients against the service, without and with the nginx front.

    python benchmarks/load/hostile.py [--model PATH] [--slow-headers 64] [--slow-bodies 16]

For each set-up (gunicorn alone with 2 sync workers; `fastner serve-proxy`), it
opens the slow connections — clients that send their headers, or their body,
one byte every half second — and meanwhile sends normal single-sentence
requests one after another for a fixed time, reporting how many were answered
and their p50/p99 latency. Then it sends the pathological 200 KB request
("a+" * 100000) and a short body (Content-Length 100, 16 bytes sent), and says
what came back and whether any worker died. Prints one JSON report.
Traffic goes to 127.0.0.1 only; every loop is bounded in time.

tests/test_proxy.py runs the same functions with smaller numbers and asserts.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from loadtest import SENTENCE, free_port

from fastner.service import gunicorn_argv
from fastner.tagger import default_model_path


def wait_ready(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            status, _ = request(port, "GET", "/readyz", timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the server did not become ready")


def start(kind, model, port, log, **settings):
    """gunicorn alone ("direct") or `fastner serve-proxy` ("front") on 127.0.0.1:port."""
    env = dict(os.environ, FASTNER_MODEL=model, FASTNER_WORKERS="2", **settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if kind == "direct":
        env["FASTNER_BIND"] = f"127.0.0.1:{port}"
        argv = gunicorn_argv()
    else:
        env["FASTNER_PUBLIC_BIND"] = f"127.0.0.1:{port}"
        argv = [sys.executable, "-m", "fastner.cli", "serve-proxy"]
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(port, proc)
    return proc


def request(port, method, path, body=None, timeout=10, headers=None):
    """(status, parsed JSON or text) of one request on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=body, headers=hdrs)
        response = conn.getresponse()
        data = response.read().decode("utf-8", "replace")
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data
    finally:
        conn.close()


def dribble(port, kind, stop, opened):
    """One slow client: headers ("headers") or a declared 1,000-byte body ("body") one
    byte every 0.5 s, until ``stop`` is set or the server hangs up."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError:
        return
    opened.append(1)
    if kind == "headers":
        pending = b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 10_000
    else:
        sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")
        pending = b'{"text": "' + b"a" * 990
    try:
        for byte in pending:
            if stop.wait(0.5):
                break
            sock.sendall(bytes([byte]))
    except OSError:
        pass                                  # the server hung up: what a front should do
    finally:
        sock.close()


def measure_under_slow_clients(port, slow_headers, slow_bodies, seconds):
    """Normal requests, one after another for ``seconds``, while the slow clients hold
    their connections. Returns answered/failed counts and p50/p99 in ms."""
    stop = threading.Event()
    opened = []
    threads = [threading.Thread(target=dribble, args=(port, kind, stop, opened), daemon=True)
               for kind in ["headers"] * slow_headers + ["body"] * slow_bodies]
    for t in threads:
        t.start()
    time.sleep(1.0)                           # let them connect and start dribbling
    body = json.dumps({"text": SENTENCE}).encode()
    latencies, failed = [], 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            status, _ = request(port, "POST", "/v1/tag", body, timeout=max(deadline - started, 1))
            if status == 200:
                latencies.append(time.monotonic() - started)
            else:
                failed += 1
        except OSError:
            failed += 1
    stop.set()
    for t in threads:
        t.join(timeout=5)
    latencies.sort()

    def pct(q):
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 1) \
            if latencies else None
    return {"slow_connections": len(opened), "answered": len(latencies), "failed": failed,
            "seconds": seconds, "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def short_body(port, wait=15):
    """Content-Length 100 with 16 bytes sent, then silence: what comes back, and when."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=wait)
    started = time.monotonic()
    try:
        sock.sendall(b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n" + b'{"text": "abcde')
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as err:
        data = f"<{type(err).__name__}>".encode()
    finally:
        sock.close()
    return {"answer": data.split(b"\r\n", 1)[0].decode("latin-1"),
            "seconds": round(time.monotonic() - started, 1)}


def pathological(port):
    started = time.monotonic()
    try:
        status, body = request(port, "POST", "/v1/tag", json.dumps({"text": "a+" * 100_000}),
                               timeout=60)
        answer = f"{status} {body['error']['code'] if isinstance(body, dict) else body[:40]!r}"
    except OSError as err:
        answer = type(err).__name__
    return {"answer": answer, "seconds": round(time.monotonic() - started, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=default_model_path())
    ap.add_argument("--slow-headers", type=int, default=64)
    ap.add_argument("--slow-bodies", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20)
    args = ap.parse_args()
    report = {}
    for kind in ("direct", "front"):
        port = free_port()
        with tempfile.TemporaryFile() as log:
            proc = start(kind, args.model, port, log)
            try:
                report[kind] = {
                    "slow_clients": measure_under_slow_clients(
                        port, args.slow_headers, args.slow_bodies, args.seconds),
                    "pathological_200KB": pathological(port),
                    "short_body": short_body(port),
                }
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
            log.seek(0)
            report[kind]["workers_killed"] = log.read().count(b"WORKER TIMEOUT")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
