"""gunicorn settings for fastner, run as ``fastner serve`` (fastner.service.gunicorn_argv).

FASTNER_BIND (default 127.0.0.1:8000) and FASTNER_WORKERS (default 2) override.
"""
import os
import tempfile

# One BLAS/OpenMP thread per worker: the workers are the parallelism. Set
# before the app (and so NumPy/SciPy's BLAS) is imported.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

# prometheus-client's multiprocess mode: every worker writes its samples here.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fastner-metrics-")

bind = os.environ.get("FASTNER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("FASTNER_WORKERS", "2"))
# sync workers take a connection only when free, so the kernel spreads requests over
# them. A gthread worker accepts connections while busy and keeps them alive: under
# wrk, one worker at times held all 16 connections while the other idled (1,250
# against 2,600 requests/s). For client keep-alive, put any proxy or load balancer
# in front. FASTNER_WORKER_CLASS=gthread (with FASTNER_THREADS) restores it.
worker_class = os.environ.get("FASTNER_WORKER_CLASS", "sync")
threads = int(os.environ.get("FASTNER_THREADS", "1"))     # gthread only
preload_app = True            # load the model once in the master; workers share it (fork, COW)
timeout = 30
graceful_timeout = 30
keepalive = 5                 # gthread only: sync workers close after each response
accesslog = os.environ.get("FASTNER_ACCESS_LOG")   # e.g. "-" for stdout; off by default


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


def child_exit(server, worker):
    from prometheus_client import multiprocess
    multiprocess.mark_process_dead(worker.pid)
