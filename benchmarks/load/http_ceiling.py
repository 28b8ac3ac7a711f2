"""How much of the HTTP budget /v1/tag spends on its own work: wrk against the
minimal Flask app (benchmarks/load/minimal_app.py: parse the JSON body, answer a
small JSON object) and against the service, one after the other, each under
fastner's gunicorn settings (2 sync workers), single-sentence requests.

    python benchmarks/load/http_ceiling.py [--seconds 20] [--connections 16]

Prints one JSON report: requests/s and latency of both, and /v1/tag as a share of
the ceiling. Traffic goes to 127.0.0.1 only; every run is bounded.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from loadtest import SENTENCE, free_port, lua_script, run_wrk

from fastner.service import APP, GUNICORN_CONFIG, gunicorn_argv

HERE = os.path.dirname(os.path.abspath(__file__))


def serve(app, port, log):
    """gunicorn with fastner's config serving ``app`` on 127.0.0.1:port, ready."""
    env = dict(os.environ, FASTNER_BIND=f"127.0.0.1:{port}", FASTNER_WORKERS="2",
               PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    argv = gunicorn_argv()[:-1] + [app]
    assert argv[-2] == GUNICORN_CONFIG
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    body = json.dumps({"text": SENTENCE}).encode()
    deadline = time.time() + 60
    while True:
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tag", data=body,
                                         headers={"Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=2).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{app} did not start; see {log.name}")
            time.sleep(0.2)


def measure(seconds, connections):
    report = {}
    with tempfile.NamedTemporaryFile(prefix="fastner-ceiling-", suffix=".log") as log:
        for name, app in (("minimal_flask", "minimal_app:create_app()"), ("v1_tag", APP)):
            port = free_port()
            proc = serve(app, port, log)
            try:
                report[name] = run_wrk(f"http://127.0.0.1:{port}", lua_script({"text": SENTENCE}),
                                       seconds, connections)
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
    report["v1_tag_share_of_ceiling"] = round(report["v1_tag"]["requests_per_second"]
                                              / report["minimal_flask"]["requests_per_second"], 3)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=16)
    args = ap.parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    print(json.dumps(measure(args.seconds, args.connections), indent=2))


if __name__ == "__main__":
    main()
