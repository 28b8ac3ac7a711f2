"""The production front, as `make serve-proxy` starts it (fastner serve-proxy: nginx
in front of gunicorn), probed with real sockets as a hostile client would."""
import json
import os
import signal
import sys
import threading
import time

import pytest
from conftest import child_pids, exchange, on_a_free_port

from fastner.service.proxy import find_nginx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks", "load"))
import hostile  # noqa: E402


def nginx_installed():
    """Whether serve-proxy can find nginx (it looks where fastner.service.proxy does)."""
    try:
        find_nginx()
        return True
    except RuntimeError:
        return False


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not nginx_installed(),
                                 reason="nginx is not installed (.ci/run installs Debian's nginx)")]

SETTINGS = {"FASTNER_CLIENT_TIMEOUT": "2", "FASTNER_DRAIN_SECONDS": "1",
            "FASTNER_MAX_BODY_BYTES": "100000"}


class Front:
    def __init__(self, model, tmp_path):
        self.log_path = tmp_path / "front.log"
        self.log = open(self.log_path, "wb")
        self.port, self.proc = on_a_free_port(
            lambda port: hostile.start("front", model, port, self.log, **SETTINGS))
        # gunicorn forks its workers one at a time: wait for both before comparing pids
        deadline = time.monotonic() + 60
        while len(self.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    def workers(self):
        """The gunicorn workers: children of serve-proxy's gunicorn child (not nginx's)."""
        for child in child_pids(self.proc.pid):
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"gunicorn" in f.read():
                    return child_pids(child)
        return []

    def read_log(self):
        return self.log_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGINT):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.log.close()
        return code


@pytest.fixture(scope="module")
def front(tiny_model_path, tmp_path_factory):
    server = Front(tiny_model_path, tmp_path_factory.mktemp("front"))
    yield server
    assert server.stop() == 0


def post_head(extra, length=None):
    head = (b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n")
    if length is not None:
        head += b"Content-Length: %d\r\n" % length
    return head + extra


def chunked(payload, size=4096):
    out = b""
    for i in range(0, len(payload), size):
        piece = payload[i:i + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    return out + b"0\r\n\r\n"


def test_slow_clients_do_not_stop_the_front(front):
    """64 connections dribbling headers and 16 dribbling bodies: normal requests are
    still answered at once (gunicorn alone answers none: see the README)."""
    workers = front.workers()
    result = hostile.measure_under_slow_clients(front.port, slow_headers=64, slow_bodies=16,
                                                seconds=4)
    assert result["slow_connections"] == 80
    assert result["failed"] == 0 and result["answered"] >= 200, result
    assert result["p99_ms"] < 250, result
    assert front.workers() == workers and "WORKER TIMEOUT" not in front.read_log()


def test_short_body_never_reaches_a_worker(front):
    workers = front.workers()
    result = hostile.short_body(front.port)
    assert result["seconds"] < 8            # closed after the 2 s client timeout
    assert front.workers() == workers and "WORKER TIMEOUT" not in front.read_log()


def test_pathological_text_is_refused_before_work(front):
    result = hostile.pathological(front.port)
    assert result["answer"].startswith("413") and result["seconds"] < 5, result


FRAMING = [  # (what, raw request, status)
    ("Content-Length over the limit", post_head(b"\r\n", 200_000) + b"{", 413),
    ("chunked body over the limit",
     post_head(b"Transfer-Encoding: chunked\r\n\r\n") + chunked(b'{"text": "' + b"a" * 150_000
                                                                 + b'"}'), 413),
    ("malformed chunk size", post_head(b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"),
     400),
    ("Content-Length with Transfer-Encoding",
     post_head(b"Transfer-Encoding: chunked\r\n\r\n", 5) + b"0\r\n\r\n", 400),
    ("negative Content-Length", post_head(b"\r\n", -5), 400),
    ("garbage request line", b"\x16\x03\x01 nonsense\r\n\r\n", 400),
]


@pytest.mark.parametrize("what,data,status", FRAMING, ids=[f[0] for f in FRAMING])
def test_front_answers_framing_errors_in_json(front, what, data, status):
    got, head, body = exchange(front.port, data)
    assert got == status, (head, body)
    assert "application/json" in head.lower()
    assert json.loads(body)["error"]["code"]


def test_chunked_body_within_the_limit_is_tagged(front):
    payload = json.dumps({"text": "Maria Lopez visited Lisbon ."}).encode()
    got, head, body = exchange(front.port, post_head(b"Transfer-Encoding: chunked\r\n\r\n")
                               + chunked(payload, 7))
    assert got == 200, body
    assert "entities" in json.loads(body)


def test_drain_answers_every_request_in_the_grace_period(tiny_model_path, tmp_path):
    """SIGTERM while clients keep sending: /readyz turns 503 at once, every request sent
    during the grace period (FASTNER_DRAIN_SECONDS, when a load balancer is still
    noticing) is answered 200, then the process exits 0 and later connections are
    refused. A request sent in the last instant, as nginx closes its listener, may be
    reset instead: a connection still in the kernel's accept queue, or accepted but not
    yet read, cannot be answered once nginx stops (TCP, not fastner); a load balancer
    has stopped sending by then."""
    server = Front(tiny_model_path, tmp_path)
    grace = float(SETTINGS["FASTNER_DRAIN_SECONDS"])
    body = json.dumps({"text": hostile.SENTENCE}).encode()
    outcomes = []                               # (monotonic start, "ok" or what failed)
    readyz = []
    stop = threading.Event()
    lock = threading.Lock()

    def client():
        while not stop.is_set():
            started = time.monotonic()
            try:
                status, _ = hostile.request(server.port, "POST", "/v1/tag", body)
                outcome = "ok" if status == 200 else f"status {status}"
            except OSError as err:
                outcome = repr(err)
                time.sleep(0.01)
            with lock:
                outcomes.append((started, outcome))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1)
    sigterm = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    while time.monotonic() < sigterm + 0.8 * grace:
        try:
            readyz.append(hostile.request(server.port, "GET", "/readyz")[0])
        except OSError:
            pass
        time.sleep(0.1)
    code = server.proc.wait(timeout=60)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    server.log.close()
    assert code == 0, server.read_log()
    assert readyz and 503 in readyz and 200 not in readyz[readyz.index(503):], readyz
    in_grace = [outcome for started, outcome in outcomes if started < sigterm + 0.8 * grace]
    assert len(in_grace) > 50 and set(in_grace) == {"ok"}, in_grace
    with pytest.raises(ConnectionRefusedError):
        hostile.request(server.port, "POST", "/v1/tag", body)
