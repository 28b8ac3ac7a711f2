"""The README's snippets run as written: every ```sh and ```python block that is not
marked illustrative (a line ``<!-- illustrative -->`` just above it: set-up commands,
a server, a full training run) is run here from the checkout's root."""
import os
import re
import signal
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- illustrative -->\n)?```(sh|python)\n(.*?)```", re.S)


def readme_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    blocks = []
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start(2)) + 1
        blocks.append((line, m.group(2), m.group(3), bool(m.group(1))))
    return blocks


def runnable():
    return [pytest.param(lang, code, id=f"README.md:{line}:{lang}")
            for line, lang, code, illustrative in readme_blocks() if not illustrative]


def test_the_readme_has_runnable_blocks_of_both_kinds():
    kinds = {lang for _, lang, _, illustrative in readme_blocks() if not illustrative}
    assert kinds == {"sh", "python"}


def test_quickstart_is_exactly_make_serve_and_make_test():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        quickstart = f.read().split("## Quickstart", 1)[1].split("```sh\n", 1)[1]
    commands = [line.split("#")[0].strip() for line in quickstart.split("```")[0].splitlines()]
    assert [c for c in commands if c] == ["make serve", "make test"]


@pytest.mark.parametrize("lang,code", runnable())
def test_readme_block_runs(lang, code, tmp_path):
    bin_dir = os.path.dirname(sys.executable)        # the venv's fastner command
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""),
               TMPDIR=str(tmp_path), OPENBLAS_NUM_THREADS="1")
    if lang == "sh":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        cmd = [sys.executable, "-c", code]
    # its own session, so that a block which starts a server is stopped whole on timeout
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-2000:]
