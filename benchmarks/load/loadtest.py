"""Load and fault tests of the service: wrk against gunicorn on loopback.

    python benchmarks/load/loadtest.py [--model PATH] [--seconds 60] [--connections 16]

Starts gunicorn with the production config (2 workers) on a free loopback
port, then runs, each with wrk:
  1. single-sentence requests (~25 tokens): requests/s, latency percentiles, non-2xx;
  2. batch requests (64 sentences each): requests/s and tokens/s;
  3. SIGKILL of one worker in the middle of a run: errors seen, worker replaced;
  4. SIGHUP (graceful reload) in the middle of a run: errors seen.
Worker resident memory is sampled before and after the single-sentence run.
Prints one JSON report. Traffic goes to 127.0.0.1 only and every run is bounded.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from fastner.service import gunicorn_argv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SENTENCE = ("The European Commission said on Thursday it disagreed with German advice to "
            "consumers to shun British lamb until scientists determine whether mad cow disease "
            "can be transmitted.")
BATCH_SENTENCES = [
    "Peter Blackburn reported from Brussels for Reuters on Thursday.",
    "Germany's representative to the European Union's veterinary committee Werner Zwingmann said on Wednesday consumers should buy sheepmeat from countries other than Britain.",
    "Fischler proposed EU-wide measures after reports from Britain and France that under laboratory conditions sheep could contract Bovine Spongiform Encephalopathy.",
    "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria in a Group C championship match on Friday.",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lua_script(body):
    return ('wrk.method = "POST"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(json.dumps(body))}\n")


def run_wrk(url, script, seconds, connections, threads=2):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s",
                              "--latency", "-s", f.name, url + "/v1/tag"],
                             capture_output=True, text=True, timeout=seconds + 60).stdout
    finally:
        os.unlink(f.name)
    return parse_wrk(out)


def _ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def parse_wrk(out):
    report = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
              "requests": int(re.search(r"(\d+) requests in", out).group(1))}
    for pct in ("50", "90", "99"):
        m = re.search(rf"\s{pct}(?:\.000)?%\s+([\d.]+(?:us|ms|s))", out)
        report[f"p{pct}_ms"] = _ms(m.group(1)) if m else None
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    report["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    report["socket_errors"] = sum(map(int, errors.groups())) if errors else 0
    return report


def workers(master):
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(p) for p in f.read().split()]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def pss_mb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "fastner-conll03.npz"))
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tmp = tempfile.mkdtemp(prefix="fastner-load-")
    served = os.path.join(tmp, "model.npz")
    shutil.copy(args.model, served)
    env = dict(os.environ, FASTNER_MODEL=served, FASTNER_BIND=f"127.0.0.1:{port}",
               FASTNER_WORKERS=str(args.workers))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = open(os.path.join(tmp, "gunicorn.log"), "wb")
    proc = subprocess.Popen(gunicorn_argv(), cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    report = {"machine": f"{os.cpu_count()} cores", "workers": args.workers,
              "connections": args.connections, "seconds": args.seconds}
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/readyz", timeout=2).close()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    sys.exit("gunicorn did not start; see " + log.name)
                time.sleep(0.2)
        with urllib.request.urlopen(url + "/v1/model", timeout=10) as r:
            info = json.load(r)
        report["model_load_seconds"] = info["load_seconds"]
        report["inference_cache_mb"] = info["inference_cache_mb"]
        single = lua_script({"text": SENTENCE})
        run_wrk(url, single, 3, args.connections)                     # warm-up
        before = {p: rss_mb(p) for p in workers(proc.pid)}
        report["single"] = run_wrk(url, single, args.seconds, args.connections)
        after = {p: rss_mb(p) for p in workers(proc.pid)}
        report["worker_rss_mb_before"] = sorted(round(v, 1) for v in before.values())
        report["worker_rss_mb_after"] = sorted(round(v, 1) for v in after.values())
        report["worker_pss_mb"] = sorted(round(pss_mb(p) or 0, 1) for p in workers(proc.pid))

        batch_body = {"texts": [BATCH_SENTENCES[i % len(BATCH_SENTENCES)] for i in range(64)]}
        from fastner.tokenize import tokenize
        batch_tokens = sum(len(tokenize(t)) for t in batch_body["texts"])
        report["batch"] = run_wrk(url, lua_script(batch_body), max(10, args.seconds // 2),
                                  args.connections)
        report["batch"]["tokens_per_request"] = batch_tokens
        report["batch"]["tokens_per_second"] = round(batch_tokens *
                                                     report["batch"]["requests_per_second"])

        # a worker killed with SIGKILL during load
        victim = workers(proc.pid)[0]
        timer = threading.Timer(5.0, os.kill, (victim, signal.SIGKILL))
        timer.start()
        report["kill_worker"] = run_wrk(url, single, 15, args.connections)
        report["kill_worker"]["replaced"] = victim not in workers(proc.pid) and \
            len(workers(proc.pid)) == args.workers

        # graceful reload during load (the model file re-read, new workers forked)
        timer = threading.Timer(5.0, proc.send_signal, (signal.SIGHUP,))
        timer.start()
        report["reload"] = run_wrk(url, single, 15, args.connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    report["gunicorn_exit_code"] = proc.returncode
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
