"""The load scripts in benchmarks/load run (briefly) and report what they claim to."""
import os
import shutil
import sys

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("wrk") is None,
                                 reason="wrk is not installed (.ci/run installs it)")]
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks", "load"))


def test_http_ceiling_measures_both_apps():
    import http_ceiling
    report = http_ceiling.measure(seconds=1, connections=4)
    for name in ("minimal_flask", "v1_tag"):
        assert report[name]["requests"] > 50 and report[name]["non_2xx"] == 0, report
    assert 0 < report["v1_tag_share_of_ceiling"] < 2
