"""Installation as a user meets it: the lock files, the build pins, and a wheel
installed into a clean virtual environment outside the repository."""
import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request

import pytest
from conftest import FIXTURES, on_a_free_port
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(ROOT, "requirements")
LOCKS = ("build.txt", "serve.txt", "dev.txt")


def pinned(lines):
    """{(name, marker): version} of a lock file's or a requires list's exact pins."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        (spec,) = req.specifier                     # every lock entry is one exact pin
        assert spec.operator == "==", line
        pins[(req.name.lower().replace("_", "-"), str(req.marker or ""))] = spec.version
    return pins


def read_lock(name, folder=REQUIREMENTS):
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return f.read()


def test_build_system_pins_are_the_build_lock():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        requires = tomllib.load(f)["build-system"]["requires"]
    assert pinned(requires) == pinned(read_lock("build.txt").splitlines())


def test_dev_lock_pins_the_build_tools_as_the_build_lock_does():
    # make test builds fastner without isolation against the dev lock's tools
    dev = pinned(read_lock("dev.txt").splitlines())
    for key, version in pinned(read_lock("build.txt").splitlines()).items():
        assert dev[key] == version, key


def test_makefile_skips_build_isolation_only_for_fastner_and_its_model_package():
    # both are built with the venv's locked build tools, never with unpinned ones
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        lines = [line for line in f if "--no-build-isolation" in line]
    assert lines and all("--no-deps" in line and line.rstrip().endswith(
        ("-e .", "./packages/fastner-accurate")) for line in lines), lines


def declared(extra_names=None):
    """Names of what pyproject.toml asks for: the runtime dependencies and those of
    the named extras (all of them by default), following fastner[...] self-references."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project["optional-dependencies"]
    names, todo, seen = set(), list(extras) if extra_names is None else list(extra_names), set()
    for line in project["dependencies"]:
        names.add(Requirement(line).name.lower().replace("_", "-"))
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in extras[extra]:
            req = Requirement(line)
            if req.name == "fastner":
                todo += list(req.extras)
            else:
                names.add(req.name.lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("lock, extras", [("dev.txt", None), ("serve.txt", ["serve"])])
def test_every_declared_dependency_is_pinned_in_its_lock(lock, extras):
    # offline: the lock may be older than the index, never narrower than pyproject
    pins = {name for name, _ in pinned(read_lock(lock).splitlines())}
    if lock == "dev.txt":
        extras_wanted = declared() - {"torch"}   # compare: PyTorch is on disk, not locked
    else:
        extras_wanted = declared(extras)
    assert extras_wanted - pins == set(), f"requirements/{lock} lacks these: run make lock"


def test_exact_pins_in_pyproject_are_the_locks_versions():
    # an extra that pins a version (the gazetteers' sources) pins the lock's
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    dev = {name: v for (name, marker), v in pinned(read_lock("dev.txt").splitlines()).items()}
    for line in (line for lines in extras.values() for line in lines):
        req = Requirement(line)
        exact = [spec.version for spec in req.specifier if spec.operator == "=="]
        if exact and req.name != "torch":
            assert dev[req.name.lower()] == exact[0], line


def fake_uv(tmp_path, tamper=""):
    """A stand-in for uv that 'resolves' each lock by copying the committed one (plus
    ``tamper`` appended to dev.txt), so lock-check's comparison runs offline."""
    script = tmp_path / "uv"
    script.write_text(
        "#!/usr/bin/env bash\n"
        "while [ $# -gt 0 ]; do [ \"$1\" = -o ] && out=$2; shift; done\n"
        f"cp {REQUIREMENTS}/$(basename \"$out\") \"$out\"\n"
        f"[ \"$(basename \"$out\")\" = dev.txt ] && printf '%s' '{tamper}' >> \"$out\"\n"
        "exit 0\n")
    script.chmod(0o755)
    return str(script)


@pytest.mark.parametrize("tamper, code", [("", 0), ("cython==9.9.9\n", 1)])
def test_lock_check_compares_what_lock_resolves_with_the_committed_locks(tmp_path, tamper, code):
    checked = subprocess.run([os.path.join(REQUIREMENTS, "lock-check.sh"),
                              fake_uv(tmp_path, tamper)], capture_output=True, text=True,
                             env=dict(os.environ, LOCK_DATE="2026-11-28T00:00:00Z"), timeout=60)
    assert checked.returncode == code, checked.stdout + checked.stderr
    if code:
        assert "requirements/dev.txt differ" in checked.stderr
        assert "+cython==9.9.9" in checked.stdout
    else:
        assert "are what make lock resolves" in checked.stdout


def test_lock_check_is_not_part_of_make_test():
    with open(os.path.join(ROOT, "Makefile"), encoding="utf-8") as f:
        makefile = f.read()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "lock" not in test_recipe and "lock-check:" in makefile


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    """`make wheel`, then the wheel and its serve extra installed, with an empty pip
    cache and the serve lock as constraints, into a new venv outside the repository."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    built = run(["make", "-s", "wheel", f"DIST={dist}"], cwd=ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("fastner-*.whl")
    assert not os.path.exists(os.path.join(ROOT, "fastner.egg-info"))   # would shadow metadata
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, PIP_NO_CACHE_DIR="1")
    installed = run([str(venv / "bin" / "pip"), "install", "-q", "-c",
                     os.path.join(REQUIREMENTS, "serve.txt"), f"{wheel}[serve]"], env=env)
    assert installed.returncode == 0, installed.stderr
    work = tmp / "elsewhere"                 # not the checkout: nothing may come from it
    work.mkdir()
    return venv / "bin", work


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("FASTNER_MODEL", "PYTHONPATH", "VIRTUAL_ENV")}
    return env


@pytest.mark.slow
def test_wheel_tags_from_the_shell_and_the_python_api(wheel_venv):
    bin_dir, work = wheel_venv
    text = "Peter Blackburn reported from Brussels.\n"
    tagged = run([str(bin_dir / "fastner"), "tag"], input=text, cwd=work, env=clean_env())
    assert tagged.returncode == 0, tagged.stderr
    labels = [(e["text"], e["label"]) for e in json.loads(tagged.stdout)["entities"]]
    assert labels == [("Peter Blackburn", "PER"), ("Brussels", "LOC")]

    script = ("import fastner, json; nlp = fastner.load(); "
              "print(json.dumps([fastner.default_model_path(), "
              "nlp('EU rejects German call.').to_dict()]))")
    api = run([str(bin_dir / "python"), "-c", script], cwd=work, env=clean_env())
    assert api.returncode == 0, api.stderr
    path, result = json.loads(api.stdout)
    assert "site-packages" in path and not path.startswith(ROOT)
    assert [e["label"] for e in result["entities"]] == ["ORG", "MISC"]

    evaluated = run([str(bin_dir / "fastner"), "evaluate", "--json", "--data",
                     os.path.join(FIXTURES, "tiny_dev.txt")], cwd=work, env=clean_env())
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["f1"] > 50

    # the service installs under fastner's name, not as a top-level "service"
    stray = run([str(bin_dir / "python"), "-c", "import service"], cwd=work, env=clean_env())
    assert stray.returncode != 0 and "No module named 'service'" in stray.stderr


@pytest.mark.slow
def test_wheel_serves_over_http(wheel_venv):
    bin_dir, work = wheel_venv
    env = dict(clean_env(), FASTNER_WORKERS="1")
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = work / "serve.log"
    body = json.dumps({"text": "EU rejects German call to boycott British lamb."}).encode()

    def start(port):
        with open(log, "wb") as out:
            proc = subprocess.Popen([str(bin_dir / "fastner"), "serve", "--bind",
                                     f"127.0.0.1:{port}"], cwd=work, env=env, stdout=out,
                                    stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tag", data=body,
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    return proc, json.load(r)
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text()) from None   # the port was taken?
                if time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError("fastner serve did not answer") from None
                time.sleep(0.2)

    _, (proc, answer) = on_a_free_port(start)
    try:
        assert [e["text"] for e in answer["entities"]] == ["EU", "German", "British"]
        assert answer["model"] == "fastner-conll03"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.mark.slow
def test_wheel_reports_the_pyproject_version(wheel_venv):
    # one place for the version: pyproject.toml, read back from the installed metadata
    bin_dir, work = wheel_venv
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        expected = tomllib.load(f)["project"]["version"]
    shown = run([str(bin_dir / "fastner"), "--version"], cwd=work, env=clean_env())
    assert shown.returncode == 0, shown.stderr
    first, model = shown.stdout.splitlines()
    assert first == f"fastner {expected}"
    assert model.startswith("model fastner-conll03 ") and "site-packages" in model
    api = run([str(bin_dir / "python"), "-c", "import fastner; print(fastner.__version__)"],
              cwd=work, env=clean_env())
    assert api.stdout.strip() == expected
