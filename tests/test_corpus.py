"""tag-corpus on a LocalCluster of 2 worker processes."""
import glob
import json
import os
import random
import threading
import time

import pytest

pytest.importorskip("distributed")
from distributed import LocalCluster  # noqa: E402

from fastner.cli import main  # noqa: E402
from fastner.corpus import plan, tag_corpus, tag_texts_partition  # noqa: E402
from fastner.tagger import Tagger  # noqa: E402

pytestmark = pytest.mark.slow
NAMES = ["Maria Lopez", "Tom Baker", "Acme Corp", "Oslo", "Grace Obi", "Helix Labs"]


def make_corpus(directory, files=2, lines=300, seed=0):
    rng = random.Random(seed)
    os.makedirs(directory, exist_ok=True)
    for f in range(files):
        with open(os.path.join(directory, f"docs{f}.txt"), "wb") as out:
            for i in range(lines):
                a, b = rng.sample(NAMES, 2)
                out.write(f"{a} met {b} in Paris on Monday . Then {b} left .\n".encode())
    return os.path.join(directory, "*.txt")


def read_output(directory):
    rows = []
    for path in sorted(glob.glob(os.path.join(directory, "part-*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rows += [json.loads(line) for line in f]
    return rows


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as c:
        yield c


def expected(model_path, pattern):
    tagger = Tagger.load(model_path)
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                rows.append({"id": f"{path}:{lineno}",
                             "entities": tagger(line.rstrip("\n")).to_dict()["entities"],
                             "model": tagger.name})
    return rows


def test_output_equals_single_process_and_resume_skips(cluster, tiny_model_path, tmp_path):
    pattern = make_corpus(str(tmp_path / "in"))
    out = str(tmp_path / "out")
    totals = tag_corpus(pattern, out, tiny_model_path, scheduler=cluster.scheduler_address,
                        partition_size=70, progress=False, log=lambda m: None)
    assert totals["documents"] == totals["tagged"] == 600 and totals["skipped"] == 0
    assert totals["partitions"] == 10
    assert read_output(out) == expected(tiny_model_path, pattern)
    assert not glob.glob(os.path.join(out, "*.tmp-*")) + glob.glob(os.path.join(out, ".*.tmp-*"))

    os.unlink(os.path.join(out, "part-00003.jsonl"))        # as if killed before commit
    # work done is counted by the files: a partition tagged again is a new file
    def identities():
        return {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns)
                for p in glob.glob(os.path.join(out, "part-*"))}
    before = identities()
    messages = []
    again = tag_corpus(pattern, out, tiny_model_path, scheduler=cluster.scheduler_address,
                       partition_size=70, progress=False, log=messages.append)
    assert again["skipped"] == 9 and again["documents"] == 600
    after = identities()
    assert {p for p in after if after[p] != before.get(p)} == {
        os.path.join(out, "part-00003.jsonl"), os.path.join(out, "part-00003.stats.json")}
    assert "9 already done (skipped), 1 to tag" in messages[0]
    assert read_output(out) == expected(tiny_model_path, pattern)

    with pytest.raises(ValueError, match="different job"):
        tag_corpus(pattern, out, tiny_model_path, scheduler=cluster.scheduler_address,
                   partition_size=50, progress=False, log=lambda m: None)


def test_killed_worker_changes_nothing(cluster, tiny_model_path, tmp_path):
    pattern = make_corpus(str(tmp_path / "in"), files=4, lines=500, seed=1)
    out = str(tmp_path / "out")
    clean = str(tmp_path / "clean")
    tag_corpus(pattern, clean, tiny_model_path, scheduler=cluster.scheduler_address,
               partition_size=25, progress=False, log=lambda m: None)

    killed = []

    def kill_one_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not glob.glob(os.path.join(out, "part-*.jsonl")):
            time.sleep(0.01)
        nanny = next(iter(cluster.workers.values()))
        os.kill(nanny.process.pid, 9)
        killed.append(nanny.process.pid)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    totals = tag_corpus(pattern, out, tiny_model_path, scheduler=cluster.scheduler_address,
                        partition_size=25, progress=False, log=lambda m: None)
    killer.join()
    assert killed
    rows = read_output(out)
    assert rows == read_output(clean)
    assert len({r["id"] for r in rows}) == len(rows) == 2000 == totals["documents"]
    assert not glob.glob(os.path.join(out, "*.tmp-*")) + glob.glob(os.path.join(out, ".*.tmp-*"))


def test_bad_input_is_counted_not_dropped(tiny_model_path, tmp_path, cluster):
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jsonl").write_bytes(
        b'{"id": "x1", "text": "Tom Baker left Oslo ."}\n'
        b'\n'
        b'{"id": "x2", "text": "' + b"word " * 50 + b'"}\n'
        b'not json\n'
        b'{"id": "x3", "body": "no text field"}\n'
        b'{"id": "x4", "text": "caf\xff"}\n')
    out = str(tmp_path / "out")
    totals = tag_corpus(str(src / "*.jsonl"), out, tiny_model_path, fmt="jsonl",
                        scheduler=cluster.scheduler_address, max_chars=100, progress=False,
                        log=lambda m: None)
    rows = read_output(out)
    assert [r["id"] for r in rows][:1] == ["x1"] and len(rows) == 6
    assert totals["tagged"] == 1
    assert totals["problems"] == {"empty": 1, "too_long": 1, "bad_json": 1, "no_text": 1,
                                  "undecodable": 1}
    assert [r.get("error", "").split(":")[0] for r in rows][1:] == \
        ["empty", "too_long", "bad_json", "no_text", "undecodable"]


def test_files_format_plan_and_partition_function(tmp_path, tiny_model_path):
    for i in range(5):
        (tmp_path / f"d{i}.txt").write_text(f"Tom Baker visited Oslo {i} .", encoding="utf-8")
    parts = plan(str(tmp_path / "*.txt"), "files", 2)
    assert [len(p["files"]) for p in parts] == [2, 2, 1]
    results = tag_texts_partition(["Tom Baker left .", "x" * 20, 7], tiny_model_path,
                                  max_chars=18)
    assert "entities" in results[0] and results[1] == {"error": "too_long"}
    assert results[2] == {"error": "not_text"}
    with pytest.raises(ValueError, match="no input files"):
        plan(str(tmp_path / "*.nothing"), "lines", 10)


def test_cli_local_cluster(tiny_model_path, tmp_path, capsys):
    pattern = make_corpus(str(tmp_path / "in"), files=1, lines=40)
    code = main(["tag-corpus", "--model", tiny_model_path, "--input", pattern, "--output",
                 str(tmp_path / "out"), "--workers", "1", "--partition-size", "15", "--quiet"])
    totals = json.loads(capsys.readouterr().out)
    assert code == 0 and totals["documents"] == 40 and totals["partitions"] == 3
