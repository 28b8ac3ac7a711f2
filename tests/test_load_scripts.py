"""The load scripts in benchmarks/load run (briefly) and report what they claim to."""
import os
import shutil
import sys

import pytest

pytestmark = pytest.mark.slow
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks", "load"))


@pytest.mark.skipif(shutil.which("wrk") is None,
                    reason="wrk is not installed (.ci/run installs it)")
def test_http_ceiling_measures_both_apps():
    import http_ceiling
    report = http_ceiling.measure(seconds=1, connections=4)
    for name in ("minimal_flask", "v1_tag"):
        assert report[name]["requests"] > 50 and report[name]["non_2xx"] == 0, report
    assert 0 < report["v1_tag_share_of_ceiling"] < 2


def test_corpus_scaling_reports_identical_outputs(tiny_model_path):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "benchmarks"))
    import corpus_scaling
    report = corpus_scaling.measure(docs=600, model=tiny_model_path, workers=[1, 2],
                                    partition_size=200)
    assert report["outputs_identical"] and [r["workers"] for r in report["runs"]] == [1, 2]
    assert all(r["docs_per_second"] > 0 for r in report["runs"])
