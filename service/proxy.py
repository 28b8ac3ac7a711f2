"""``fastner serve-proxy`` (``make serve-proxy``): gunicorn on a unix socket behind the
nginx front (service/nginx.conf.template), both in the foreground.

Stopping: SIGTERM drains (the drain flag turns /readyz to 503 for
FASTNER_DRAIN_SECONDS while both keep serving), then nginx stops gracefully
(finishing what it accepted, which waits on gunicorn), then gunicorn; SIGINT
(Ctrl-C) does the same without the grace period. The exit status is 0 after a
requested stop, 1 if either process died on its own.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from importlib.resources import files

from fastner.service import gunicorn_argv
from fastner.settings import setting

TEMPLATE = "nginx.conf.template"


def find_nginx():
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)
    if found is None:
        raise RuntimeError("nginx is not installed (Debian: apt-get install nginx); "
                           "fastner serve runs the service without the front")
    return found


def render_config(runtime, sock):
    """The nginx configuration for this run, from the template and the settings."""
    values = {"RUNTIME": runtime, "SOCKET": sock, "PUBLIC_BIND": setting("FASTNER_PUBLIC_BIND"),
              "CLIENT_TIMEOUT": str(setting("FASTNER_CLIENT_TIMEOUT")),
              "MAX_BODY_BYTES": str(setting("FASTNER_MAX_BODY_BYTES"))}
    text = (files("fastner.service") / TEMPLATE).read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@{name}@", value)
    return text


def _wait_for_socket(path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {proc.returncode} while starting")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(path)
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"gunicorn did not listen on {path} within {timeout} s")


def serve_proxy(log=print):
    nginx = find_nginx()
    runtime = tempfile.mkdtemp(prefix="fastner-proxy-")
    os.chmod(runtime, 0o711)             # nginx's workers (user nobody) reach the socket
    sock = os.path.join(runtime, "gunicorn.sock")
    drain = os.path.join(runtime, "draining")
    env = dict(os.environ, FASTNER_BIND=f"unix:{sock}", FASTNER_DRAIN_FILE=drain)
    requested = []                        # the signal that asked us to stop

    def on_signal(signum, _frame):
        requested.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # own sessions: Ctrl-C reaches this process only, which then stops both in order
    gunicorn = subprocess.Popen(gunicorn_argv(), env=env, start_new_session=True)
    front = None
    try:
        _wait_for_socket(sock, gunicorn)
        conf = os.path.join(runtime, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(render_config(runtime, sock))
        front = subprocess.Popen([nginx, "-e", "stderr", "-p", runtime, "-c", conf,
                                  "-g", "daemon off;"], start_new_session=True)
        log(f"fastner: nginx on http://{setting('FASTNER_PUBLIC_BIND')} in front of gunicorn "
            f"(unix:{sock})")
        while not requested and gunicorn.poll() is None and front.poll() is None:
            time.sleep(0.1)
        if not requested:
            log("fastner: " + ("gunicorn" if gunicorn.poll() is not None else "nginx")
                + " exited; stopping")
            return 1
        with open(drain, "w"):
            pass
        if requested[0] == signal.SIGTERM:
            grace = setting("FASTNER_DRAIN_SECONDS")
            log(f"fastner: draining for {grace:g} s (/readyz answers 503)")
            time.sleep(grace)
        return 0
    finally:
        if front is not None and front.poll() is None:
            front.send_signal(signal.SIGQUIT)            # graceful: finish accepted requests
            front.wait()
        if gunicorn.poll() is None:
            gunicorn.send_signal(signal.SIGTERM)         # the flag exists: no second grace
            gunicorn.wait()
        shutil.rmtree(runtime, ignore_errors=True)
