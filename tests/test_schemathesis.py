"""Third-party fuzzing: schemathesis against the live service (real gunicorn, the
production config) from its own /openapi.json, with every check it has."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")


def test_schemathesis_finds_nothing(gunicorn_server, tmp_path):
    st = os.path.join(os.path.dirname(sys.executable), "st")
    report = tmp_path / "report.json"
    run = subprocess.run(
        [st, "--config-file", CONFIG, "run", gunicorn_server.url + "/openapi.json",
         "--checks", "all", "--max-examples", "400", "--seed", "1", "--workers", "2",
         "--generation-database", "none", "--no-color", "--report", "json",
         "--report-json-path", str(report)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["failures"] == [] and result["errors"] == []
    assert result["operations"]["tested"] == 5
    tag = result["valid_rates"]["POST /v1/tag"]
    cases = sum(sum(phase.values()) for phase in tag.values())
    assert cases >= 250, tag           # valid ones; schema-violating cases come on top
    assert result["test_cases"]["generated"] >= 400
