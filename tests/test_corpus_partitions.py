"""tag-corpus's planning and its partitions, in this process (no Dask): every document
of every input counted and tagged once, whatever the file's line endings."""
import json
import os

import pytest

from fastner import corpus
from fastner.corpus import plan, run_partition
from fastner.tagger import Tagger


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def outputs(directory, index=0):
    with open(os.path.join(directory, f"part-{index:05d}.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("data,n", [(b"a\nb\nc\n", 3), (b"a\nb\nc", 3), (b"", 0), (b"a", 1),
                                    (b"\n", 1), (b"a\r\nb\r\n", 2), (b"a\n" * 7, 7)])
def test_plan_counts_every_line_a_last_one_without_newline_too(tmp_path, data, n):
    path = write(tmp_path / "in.txt", data)
    parts = plan(path, "lines", 3)
    assert sum(p["stop"] - p["start"] for p in parts) == n
    assert [p["index"] for p in parts] == list(range(len(parts)))
    assert all(p["stop"] - p["start"] <= 3 for p in parts)


def test_plan_counts_lines_across_its_read_blocks(tmp_path):
    path = write(tmp_path / "big.txt", b"x" * ((1 << 20) - 1) + b"\n" + b"y")
    assert plan(path, "lines", 10) == [{"files": [path], "start": 0, "stop": 2, "index": 0}]


def test_plan_refuses_bad_arguments(tmp_path):
    path = write(tmp_path / "in.txt", b"a\n")
    with pytest.raises(ValueError, match="format must be one of"):
        plan(path, "csv", 10)
    with pytest.raises(ValueError, match="at least 1; got 0"):
        plan(path, "lines", 0)
    assert len(plan(path, "lines", 1)) == 1
    with pytest.raises(ValueError, match="no input files match"):
        plan(str(tmp_path / "none*.txt"), "lines", 10)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("trailing", [True, False])
def test_every_document_is_tagged_whatever_the_line_endings(tmp_path, tiny_model_path,
                                                           ending, bom, trailing):
    texts = ["Maria Lopez met Tom Baker in Paris .", "Then Tom Baker left .",
             "Grace Obi works for Helix Labs ."]
    data = bom + ending.join(t.encode() for t in texts) + (ending if trailing else b"")
    path = write(tmp_path / "in.txt", data)
    out = str(tmp_path / "out")
    os.makedirs(out)
    [part] = plan(path, "lines", 10)
    stats = run_partition(part, out, tiny_model_path, "lines")
    assert stats["documents"] == stats["tagged"] == 3 and not stats["skipped"]
    tagger = Tagger.load(tiny_model_path)
    rows = outputs(out)
    assert [r["id"] for r in rows] == [f"{path}:{i}" for i in (1, 2, 3)]
    assert [r["entities"] for r in rows] == [tagger(t).to_dict()["entities"] for t in texts]


def test_files_format_strips_a_bom(tmp_path, tiny_model_path):
    text = "Maria Lopez met Tom Baker in Paris ."
    a = write(tmp_path / "a.txt", b"\xef\xbb\xbf" + text.encode())
    write(tmp_path / "b.txt", text.encode())
    out = str(tmp_path / "out")
    os.makedirs(out)
    [part] = plan(str(tmp_path / "*.txt"), "files", 10)
    run_partition(part, out, tiny_model_path, "files")
    rows = outputs(out)
    assert [r["id"] for r in rows] == [a, str(tmp_path / "b.txt")]
    assert rows[0]["entities"] == rows[1]["entities"]
    assert rows[0]["entities"][0]["start"] == 0


def test_a_finished_partition_is_not_tagged_again(tmp_path, tiny_model_path, monkeypatch):
    path = write(tmp_path / "in.txt", b"Maria Lopez met Tom Baker .\n")
    out = str(tmp_path / "out")
    os.makedirs(out)
    [part] = plan(path, "lines", 10)
    first = run_partition(part, out, tiny_model_path, "lines")
    made = os.stat(os.path.join(out, "part-00000.jsonl"))

    def no_tagging(model_path):
        raise AssertionError("a finished partition was tagged again")
    monkeypatch.setattr(corpus, "get_tagger", no_tagging)
    again = run_partition(part, out, tiny_model_path, "lines")
    assert again == dict(first, skipped=True)
    now = os.stat(os.path.join(out, "part-00000.jsonl"))
    assert (now.st_ino, now.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)


def test_a_partition_that_fails_leaves_no_output_or_temporary(tmp_path, tiny_model_path,
                                                              monkeypatch):
    path = write(tmp_path / "in.txt", b"Maria Lopez met Tom Baker .\n" * 5)
    out = str(tmp_path / "out")
    os.makedirs(out)
    [part] = plan(path, "lines", 10)
    tagger = corpus.get_tagger(tiny_model_path)

    def broken(texts, *args, **kwargs):
        raise MemoryError
    monkeypatch.setattr(tagger, "tag_texts", broken)
    with pytest.raises(MemoryError):
        run_partition(part, out, tiny_model_path, "lines")
    assert os.listdir(out) == []


def test_partition_bounds_are_exact(tmp_path, tiny_model_path):
    path = write(tmp_path / "in.txt", b"".join(f"Doc {i} in Paris .\n".encode()
                                               for i in range(7)))
    out = str(tmp_path / "out")
    os.makedirs(out)
    parts = plan(path, "lines", 3)
    assert [(p["start"], p["stop"]) for p in parts] == [(0, 3), (3, 6), (6, 7)]
    for p in parts:
        run_partition(p, out, tiny_model_path, "lines")
    ids = [r["id"] for i in range(3) for r in outputs(out, i)]
    assert ids == [f"{path}:{n}" for n in range(1, 8)]


def test_problems_are_counted_and_kept_in_order(tmp_path, tiny_model_path):
    path = write(tmp_path / "in.jsonl", b'{"text": "Paris ."}\n\nnot json\n{"x": 1}\n'
                 b'{"text": "' + b"a " * 30 + b'", "id": 7}\n' + b'\xff\n')
    out = str(tmp_path / "out")
    os.makedirs(out)
    [part] = plan(path, "jsonl", 10)
    stats = run_partition(part, out, tiny_model_path, "jsonl", max_chars=50)
    assert stats["documents"] == 6 and stats["tagged"] == 1
    assert stats["problems"] == {"empty": 1, "bad_json": 1, "no_text": 1, "too_long": 1,
                                 "undecodable": 1}
    rows = outputs(out)
    assert [r.get("error", "ok").split(":")[0] for r in rows] == [
        "ok", "empty", "bad_json", "no_text", "too_long", "undecodable"]
    assert rows[4]["id"] == "7"


def test_the_texts_partition_function_refuses_what_it_cannot_tag(tiny_model_path):
    from fastner.corpus import tag_texts_partition
    tagger = Tagger.load(tiny_model_path)
    results = tag_texts_partition(["Paris", "Lisbon", 7, None], tiny_model_path, max_chars=5)
    assert results[0] == tagger("Paris").to_dict()
    assert results[1:] == [{"error": "too_long"}, {"error": "not_text"}, {"error": "not_text"}]
    long = tag_texts_partition(["a" * 100_000, "a" * 100_001], tiny_model_path)
    assert "entities" in long[0] and long[1] == {"error": "too_long"}


def test_lines_are_read_as_they_are_but_their_line_ends(tmp_path, tiny_model_path):
    path = write(tmp_path / "in.jsonl", b'{"text": "Paris ."}\n{"text": "aXXXX"}\n')
    out = str(tmp_path / "out")
    os.makedirs(out)
    [part] = plan(path, "jsonl", 10)
    stats = run_partition(part, out, tiny_model_path, "jsonl", max_chars=4)
    assert stats["problems"] == {"too_long": 2}
    assert [r["id"] for r in outputs(out)] == [f"{path}:1", f"{path}:2"]
    lines = write(tmp_path / "in.txt", b"\rMaria Lopez met Tom Baker in Paris .\n")
    out2 = str(tmp_path / "out2")
    os.makedirs(out2)
    [part] = plan(lines, "lines", 10)
    run_partition(part, out2, tiny_model_path, "lines")
    tagger = Tagger.load(tiny_model_path)
    assert outputs(out2)[0]["entities"] == \
        tagger("\rMaria Lopez met Tom Baker in Paris .").to_dict()["entities"]


# -- the whole job, on a Dask cluster of threads in this process (seconds, not a
# cluster of processes: the mutation run starts one per mutant) -----------------

@pytest.fixture(scope="module")
def thread_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0") as c:
        yield c


def job_files(directory):
    """{name: (inode, mtime)} of the partitions' files: a partition tagged again is new."""
    return {name: (os.stat(os.path.join(directory, name)).st_ino,
                   os.stat(os.path.join(directory, name)).st_mtime_ns)
            for name in os.listdir(directory) if name.startswith("part-")}


def test_a_job_tags_each_partition_once_and_a_rerun_only_what_is_missing(
        tmp_path, tiny_model_path, thread_cluster):
    texts = [f"Maria Lopez met Tom Baker in Paris on day {i} ." for i in range(11)]
    path = write(tmp_path / "in.txt", "\n".join(texts).encode())     # no final newline
    out = str(tmp_path / "out")
    os.makedirs(out)
    # what a killed earlier run left half-written: rubbish once the job is complete
    write(os.path.join(out, "part-00001.jsonl.tmp-dead"), b"half")
    write(os.path.join(out, ".part-00001.stats.json.tmp-dead"), b"half")
    messages = []
    totals = corpus.tag_corpus(path, out, tiny_model_path, scheduler=thread_cluster.scheduler_address,
                               partition_size=4, progress=False, log=messages.append)
    assert {k: totals[k] for k in ("partitions", "skipped", "documents", "tagged")} == \
        {"partitions": 3, "skipped": 0, "documents": 11, "tagged": 11}
    tagger = Tagger.load(tiny_model_path)
    expected = [tagger(t) for t in texts]
    assert totals["tokens"] == sum(d.n_tokens for d in expected)
    assert totals["entities"] == sum(len(d.ents) for d in expected) > 0
    assert totals["problems"] == {} and totals["seconds"] >= 0
    assert messages[0] == "3 partitions; 0 already done (skipped), 3 to tag"
    rows = [r for i in range(3) for r in outputs(out, i)]
    assert [r["id"] for r in rows] == [f"{path}:{n}" for n in range(1, 12)]
    assert [r["entities"] for r in rows] == [d.to_dict()["entities"] for d in expected]
    assert sorted(os.listdir(out)) == ["_manifest.json"] + sorted(
        f"part-{i:05d}.{kind}" for i in range(3) for kind in ("jsonl", "stats.json"))
    with open(os.path.join(out, "_manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert manifest["partitions"] == plan(path, "lines", 4)
    assert manifest["format"] == "lines" and manifest["max_chars"] == 100_000

    os.unlink(os.path.join(out, "part-00002.jsonl"))          # as if killed before its commit
    before = job_files(out)
    messages.clear()
    again = corpus.tag_corpus(path, out, tiny_model_path, scheduler=thread_cluster.scheduler_address,
                              partition_size=4, progress=False, log=messages.append)
    after = job_files(out)
    assert {name for name in after if after[name] != before.get(name)} == {
        "part-00002.jsonl", "part-00002.stats.json"}
    assert messages[0] == "3 partitions; 2 already done (skipped), 1 to tag"
    assert {k: again[k] for k in ("partitions", "skipped", "documents", "tagged", "tokens")} == \
        {"partitions": 3, "skipped": 2, "documents": 11, "tagged": 11,
         "tokens": totals["tokens"]}

    for changed in ({"partition_size": 5}, {"max_chars": 99}, {"fmt": "jsonl"},
                    {"text_field": "body"}, {"id_field": "key"}):
        settings = dict(partition_size=4, progress=False, log=lambda m: None,
                        scheduler=thread_cluster.scheduler_address) | changed
        with pytest.raises(ValueError, match="holds the output of a different job"):
            corpus.tag_corpus(path, out, tiny_model_path, **settings)


def test_a_job_counts_problems_and_refuses_a_bad_model_before_its_cluster(
        tmp_path, tiny_model_path, thread_cluster):
    path = write(tmp_path / "in.jsonl", b'{"text": "Paris ."}\n\n{"x": 1}\n{"text": "Oslo ."}\n')
    out = str(tmp_path / "out")
    totals = corpus.tag_corpus(path, out, tiny_model_path, fmt="jsonl", partition_size=2,
                               scheduler=thread_cluster.scheduler_address, progress=False,
                               log=lambda m: None)
    assert (totals["documents"], totals["tagged"]) == (4, 2)
    assert totals["problems"] == {"empty": 1, "no_text": 1}
    bad = write(tmp_path / "bad.npz", b"not a model")
    with pytest.raises(Exception, match="bad.npz"):
        corpus.tag_corpus(path, str(tmp_path / "out2"), bad, fmt="jsonl",
                          scheduler="tcp://127.0.0.1:1", progress=False, log=lambda m: None)
    assert not os.path.exists(tmp_path / "out2")


def test_a_job_without_a_scheduler_starts_and_stops_its_own_cluster(tmp_path, tiny_model_path):
    pytest.importorskip("distributed")
    path = write(tmp_path / "in.txt", b"Maria Lopez met Tom Baker .\nThen Tom Baker left .\n")
    messages = []
    totals = corpus.tag_corpus(path, str(tmp_path / "out"), tiny_model_path, workers=1,
                               progress=False, log=messages.append)
    assert totals["documents"] == totals["tagged"] == 2
    assert messages[0] == "1 partitions; 0 already done (skipped), 1 to tag"
    assert messages[1].startswith("Dask dashboard: http")
