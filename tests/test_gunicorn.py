"""The real thing: gunicorn with the production config on a loopback port."""
import json
import os
import shutil
import signal
import time
import urllib.error
import urllib.request

import pytest
from conftest import Gunicorn, exchange

pytestmark = pytest.mark.slow


def request(url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_tag_metrics_ready_and_clean_shutdown(tiny_model_path, tmp_path):
    server = Gunicorn(tiny_model_path, tmp_dir=str(tmp_path))
    try:
        for _ in range(20):
            status, body = request(server.url + "/v1/tag", {"text": "Tom Baker visited Oslo ."})
            assert status == 200 and json.loads(body)["entities"]
        status, body = request(server.url + "/v1/tag", {"text": 1})
        assert status == 422
        assert request(server.url + "/readyz")[0] == 200
        status, metrics = request(server.url + "/metrics")
        assert status == 200
        # counts from both workers, aggregated through the multiprocess directory
        line = [x for x in metrics.splitlines()
                if x.startswith('fastner_requests_total{endpoint="/v1/tag",method="POST",'
                                'status="200"}')]
        assert line and float(line[0].split()[-1]) == 20.0, metrics
        assert len(server.worker_pids()) == 2
    finally:
        code = server.stop()
    assert code == 0, server.read_log()


def test_killed_worker_is_replaced_and_reload_swaps_the_model(tiny_model_path, tmp_path):
    model = str(tmp_path / "served.npz")
    shutil.copy(tiny_model_path, model)
    server = Gunicorn(model, tmp_dir=str(tmp_path))
    try:
        before = server.worker_pids()
        os.kill(before[0], signal.SIGKILL)
        failures = 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, _ = request(server.url + "/v1/tag", {"text": "Tom Baker left ."})
            failures += status != 200
            pids = server.worker_pids()
            if len(pids) == 2 and before[0] not in pids:
                break
            time.sleep(0.05)
        assert before[0] not in server.worker_pids()
        assert failures == 0

        # replace the model file with one whose card differs, then SIGHUP
        from fastner.modelfile import load_model, save_model
        replacement = load_model(tiny_model_path)
        save_model(replacement, model + ".new", {"command": "reloaded-model"})
        os.replace(model + ".new", model)
        old_workers = server.worker_pids()
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        seen_new = False
        while time.monotonic() < deadline and not seen_new:
            status, body = request(server.url + "/v1/model")
            assert status == 200
            seen_new = json.loads(body)["training_command"] == "reloaded-model"
            time.sleep(0.05)
        assert seen_new, server.read_log()
        # the old workers finish their requests and leave; the new ones are all forked
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pids = server.worker_pids()
            if len(pids) == 2 and not set(old_workers) & set(pids):
                break
            time.sleep(0.1)
        assert not set(old_workers) & set(server.worker_pids())
        assert len(server.worker_pids()) == 2
    finally:
        assert server.stop() == 0


def test_fastner_serve_starts_gunicorn(tiny_model_path, tmp_path):
    import subprocess
    import sys

    from conftest import on_a_free_port

    def start(port):
        proc = subprocess.Popen([sys.executable, "-m", "fastner.cli", "serve", "--model",
                                 tiny_model_path, "--bind", f"127.0.0.1:{port}", "--workers",
                                 "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("fastner serve exited (port taken?)")
            try:
                return proc, request(f"http://127.0.0.1:{port}/v1/model")
            except OSError:
                time.sleep(0.2)
        proc.kill()
        raise AssertionError("fastner serve did not answer")

    _, (proc, (status, body)) = on_a_free_port(start)
    try:
        assert status == 200 and json.loads(body)["name"] == "tiny"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


DIRECT_FRAMING = [  # gunicorn alone: errors it answers itself are JSON too
    ("malformed chunk size", b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
     b"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n", 400),
    ("negative Content-Length", b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
     400),
    ("Content-Length with Transfer-Encoding",
     b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("duplicate Content-Type", b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: "
     b"application/json\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}", None),
    ("garbage request line", b"\x16\x03\x01 nonsense\r\n\r\n", 400),
    ("chunked body over the limit", b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: "
     b"application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
     b"".join(b"%x\r\n" % 100_000 + b"a" * 100_000 + b"\r\n" for _ in range(11)) +
     b"0\r\n\r\n", 413),
    ("short body, then silence", b"POST /v1/tag HTTP/1.1\r\nHost: x\r\nContent-Type: "
     b"application/json\r\nContent-Length: 100\r\n\r\n{\"text\": \"abc", 408),
]


@pytest.mark.parametrize("what,data,status", DIRECT_FRAMING, ids=[f[0] for f in DIRECT_FRAMING])
def test_direct_errors_are_json_and_spare_the_workers(gunicorn_server, what, data, status):
    workers = gunicorn_server.worker_pids()
    port = int(gunicorn_server.url.rsplit(":", 1)[1])
    got, head, body = exchange(port, data)
    assert (400 <= got < 500) if status is None else got == status, (head, body)
    assert "application/json" in head.lower(), head
    assert json.loads(body)["error"]["code"]
    assert gunicorn_server.worker_pids() == workers


def test_sigterm_drains_before_stopping(tiny_model_path, tmp_path):
    server = Gunicorn(tiny_model_path, tmp_dir=str(tmp_path))
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    status, body = request(server.url + "/readyz")
    assert status == 503 and json.loads(body)["error"]["code"] == "draining"
    assert request(server.url + "/v1/tag", {"text": "Tom Baker visited Oslo ."})[0] == 200
    assert server.stop() == 0
