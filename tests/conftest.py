import io
import os

import pytest

from fastner.service import gunicorn_argv


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal: progress bars draw on it."""

    def isatty(self):
        return True


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data", "conll2003")


@pytest.fixture
def tiny_train_path():
    return os.path.join(FIXTURES, "tiny_train.txt")


@pytest.fixture
def tiny_dev_path():
    return os.path.join(FIXTURES, "tiny_dev.txt")


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A small model trained once per test session on the fixtures (no GloVe)."""
    from fastner.conll import read_conll
    from fastner.train import TrainConfig, Trainer
    out = str(tmp_path_factory.mktemp("model") / "tiny.npz")
    cfg = TrainConfig(epochs=4, hidden=32, glove_words=0, word_dim=16, seed=1, patience=10)
    trainer = Trainer(cfg, out, quiet=True, log=lambda msg: None)
    train = read_conll(os.path.join(FIXTURES, "tiny_train.txt"))
    dev = read_conll(os.path.join(FIXTURES, "tiny_dev.txt"))
    model, state = trainer.run(train, dev)
    trainer.finish(model, state)
    return out


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_a_free_port(start, attempts=3):
    """(port, start(port)) on a port that was free a moment ago. Another process can
    take it between that check and the server's bind, so a start that fails (raises
    RuntimeError) is tried again on another port."""
    for attempt in range(attempts):
        port = free_port()
        try:
            return port, start(port)
        except RuntimeError:
            if attempt == attempts - 1:
                raise


def exchange(port, data, timeout=10):
    """Send raw bytes; (status, headers text, body) of the answer, read to the close."""
    import socket
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else None
    return status, head.decode("latin-1"), body


def child_pids(parent_pid):
    """Pids of a process's children that have not yet been reaped."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue        # exited while we looked
        # the command name (field 2) may hold spaces: the fields after it start past ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == parent_pid and fields[0] != "Z":
            pids.append(int(entry))
    return sorted(pids)


class Gunicorn:
    """gunicorn running the real service config on a free loopback port."""

    def __init__(self, model_path, workers=2, tmp_dir=None, attempts=3):
        # free_port() can race with another process taking the port: try a few
        for attempt in range(attempts):
            try:
                self._start(model_path, workers, tmp_dir)
                return
            except RuntimeError:
                if attempt == attempts - 1:
                    raise

    def _start(self, model_path, workers, tmp_dir):
        import subprocess
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, FASTNER_MODEL=model_path, FASTNER_BIND=f"127.0.0.1:{self.port}",
                   FASTNER_WORKERS=str(workers), FASTNER_DRAIN_SECONDS="0.5",
                   FASTNER_CLIENT_TIMEOUT="2")
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log_path = os.path.join(tmp_dir, "gunicorn.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            gunicorn_argv(), cwd=root, env=env, stdout=self.log,
            stderr=subprocess.STDOUT)
        self.wait_ready()

    def wait_ready(self, timeout=30):
        """Until /readyz answers 200 *and* every worker has been forked: gunicorn's
        arbiter spawns workers one at a time with a random pause of up to 0.1 s, so
        the first worker can answer before the second exists."""
        import time
        import urllib.request
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"gunicorn exited: {self.read_log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200 and len(self.worker_pids()) == self.workers:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"gunicorn did not become ready: {self.read_log()}")

    def worker_pids(self):
        """Pids of the master's live children, from /proc (ppid field of /proc/N/stat)."""
        return child_pids(self.proc.pid)

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        import signal
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


@pytest.fixture(scope="module")
def gunicorn_server(tiny_model_path, tmp_path_factory):
    server = Gunicorn(tiny_model_path, tmp_dir=str(tmp_path_factory.mktemp("gunicorn")))
    yield server
    server.stop()
