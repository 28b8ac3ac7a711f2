"""gunicorn settings for fastner, run as ``fastner serve`` (fastner.service.gunicorn_argv).

Every value comes from fastner.settings (FASTNER_BIND, FASTNER_WORKERS, ...).
Two behaviours are added to gunicorn here, in the master before it forks:
errors gunicorn answers itself (malformed HTTP framing) use the service's JSON
error shape, and SIGTERM drains: /readyz answers 503 for FASTNER_DRAIN_SECONDS
while requests are still served, then gunicorn stops gracefully.
"""
import json
import os
import tempfile
import time

# One BLAS/OpenMP thread per worker: the workers are the parallelism. Set before
# anything imports NumPy (fastner.settings below imports the fastner package).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

from gunicorn import util  # noqa: E402
from gunicorn.arbiter import Arbiter  # noqa: E402

from fastner.settings import setting  # noqa: E402

# prometheus-client's multiprocess mode: every worker writes its samples here.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fastner-metrics-")
# The drain flag: the master creates it on SIGTERM, every worker's /readyz looks for it.
if not setting("FASTNER_DRAIN_FILE"):
    os.environ["FASTNER_DRAIN_FILE"] = os.path.join(
        tempfile.mkdtemp(prefix="fastner-drain-"), "draining")

bind = setting("FASTNER_BIND")
workers = setting("FASTNER_WORKERS")
# sync workers take a connection only when free, so the kernel spreads requests over
# them. A gthread worker accepts connections while busy and keeps them alive: under
# wrk, one worker at times held all 16 connections while the other idled (1,250
# against 2,600 requests/s). For client keep-alive, put the nginx front (make
# serve-proxy) or any buffering proxy in front.
worker_class = setting("FASTNER_WORKER_CLASS")
threads = setting("FASTNER_THREADS")        # gthread only
preload_app = True            # load the model once in the master; workers share it (fork, COW)
timeout = 30
graceful_timeout = 30
keepalive = 5                 # gthread only: sync workers close after each response
accesslog = setting("FASTNER_ACCESS_LOG")
# No gunicornc control socket: its default path is one per user, so two instances on a
# machine (serve and serve-proxy, or the tests) would fight over it; signals control us.
control_socket_disable = True


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error with the service's {"error": {"code", "message"}} body
    instead of an HTML page (gunicorn calls it for requests it cannot parse)."""
    code = "bad_request" if status_int < 500 else "internal_error"
    body = json.dumps({"error": {"code": code, "message": f"{reason}: {mesg}"[:300]
                                 if mesg else reason}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = write_json_error          # gunicorn's workers call util.write_error
_stop_gracefully = Arbiter.handle_term


def drain_then_stop(arbiter):
    """SIGTERM in the master: mark the instance draining (so /readyz turns 503 and a load
    balancer stops sending), keep serving for FASTNER_DRAIN_SECONDS, then stop as
    gunicorn does. If the flag already exists (serve-proxy drained first), stop now."""
    flag = setting("FASTNER_DRAIN_FILE")
    if not os.path.exists(flag):
        with open(flag, "w"):
            pass
        grace = setting("FASTNER_DRAIN_SECONDS")
        arbiter.log.info("SIGTERM: draining for %g s (/readyz answers 503)", grace)
        time.sleep(grace)
    _stop_gracefully(arbiter)


Arbiter.handle_term = drain_then_stop


def on_reload(server):
    """SIGHUP: build the app again in the master (re-reading the model file) before the
    new workers fork, so a replaced model file is served without refusing requests.
    If the new file cannot be loaded, keep serving the old model."""
    old = server.app.callable
    server.app.callable = None
    try:
        server.app.wsgi()
        server.log.info("reloaded the application and model")
    except Exception:
        server.log.exception("reload failed; still serving the previous model")
        server.app.callable = old


def on_exit(server):
    flag = setting("FASTNER_DRAIN_FILE")
    if flag and os.path.exists(flag):
        os.remove(flag)


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
