"""Corpus-scale tagging on Dask (``fastner tag-corpus``), resumable and exactly once.

The job is a list of partitions fixed up front (input file, first and last
document), written to ``OUTPUT/_manifest.json``. Each partition is one Dask
task that writes ``part-NNNNN.jsonl`` (one JSON object per document) under a
temporary name and renames it when complete, after its ``.stats.json``; so a
killed or retried task never leaves a partial or duplicate file, and a rerun
skips every partition whose output exists. Worker processes load the model once
(``get_tagger``) and reuse it for every task they run.

Input formats: ``lines`` (one document per line of each file), ``jsonl`` (one
JSON object per line, the text under ``--text-field``, an optional id under
``--id-field``) and ``files`` (each file is one document).
"""
import glob
import json
import os
import time
import uuid

from fastner.io import file_sha256, write_json_atomically

FORMATS = ("lines", "jsonl", "files")
_TAGGERS = {}


def get_tagger(model_path):
    """The Tagger for ``model_path``, loaded once per process."""
    from fastner.tagger import Tagger
    tagger = _TAGGERS.get(model_path)
    if tagger is None:
        tagger = _TAGGERS[model_path] = Tagger.load(model_path)
    return tagger


# -- planning ----------------------------------------------------------------

def _count_lines(path):
    n = 0
    last = b"\n"
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def plan(input_glob, fmt, partition_size):
    """The partitions of a job: dicts with files and line ranges, in a fixed order."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}; got {fmt!r}")
    if partition_size < 1:
        raise ValueError(f"partition size must be at least 1; got {partition_size}")
    paths = sorted(p for p in glob.glob(input_glob, recursive=True) if os.path.isfile(p))
    if not paths:
        raise ValueError(f"no input files match {input_glob!r}")
    parts = []
    if fmt == "files":
        for at in range(0, len(paths), partition_size):
            parts.append({"files": paths[at:at + partition_size]})
    else:
        for path in paths:
            n = _count_lines(path)
            for start in range(0, n, partition_size):
                parts.append({"files": [path], "start": start, "stop": min(n, start + partition_size)})
    for i, part in enumerate(parts):
        part["index"] = i
    return parts


# A UTF-8 byte-order mark (editors on Windows write one) starts the file, not its text.
_BOM = b"\xef\xbb\xbf"


def _read_documents(part, fmt, text_field, id_field):
    """(doc id, text or None, problem or None) for each document of a partition."""
    if fmt == "files":
        for path in part["files"]:
            with open(path, "rb") as f:
                yield (path,) + _decode(f.read().removeprefix(_BOM))
        return
    path = part["files"][0]
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f):
            if lineno < part["start"]:
                continue
            if lineno >= part["stop"]:
                break
            doc_id = f"{path}:{lineno + 1}"
            if lineno == 0:
                raw = raw.removeprefix(_BOM)
            text, problem = _decode(raw.rstrip(b"\r\n"))
            if fmt == "jsonl" and problem is None:
                text, doc_id, problem = _from_json(text, doc_id, text_field, id_field)
            yield doc_id, text, problem


def _decode(raw):
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return None, f"undecodable: invalid UTF-8 at byte {err.start}"


def _from_json(line, doc_id, text_field, id_field):
    if not line.strip():
        return None, doc_id, "empty"
    try:
        obj = json.loads(line)
    except ValueError as err:
        return None, doc_id, f"bad_json: {err}"
    if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
        return None, doc_id, f"no_text: no string field {text_field!r}"
    if id_field in obj:
        doc_id = str(obj[id_field])
    return obj[text_field], doc_id, None


# -- one partition (a Dask task) ---------------------------------------------

def tag_texts_partition(texts, model_path, max_chars=100_000):
    """Tag a list of texts with the per-process model: the building block for users'
    own Dask pipelines, e.g. ``bag.map_partitions(tag_texts_partition, path)``.

    Returns one {"entities": [...]} per text; a text over ``max_chars`` characters,
    or not a string, gets {"error": ...} instead, never an exception.
    """
    tagger = get_tagger(model_path)
    texts = list(texts)
    ok = [i for i, t in enumerate(texts) if isinstance(t, str) and len(t) <= max_chars]
    results = [{"error": "too_long" if isinstance(t, str) else "not_text"} for t in texts]
    for i, doc in zip(ok, tagger.tag_texts([texts[i] for i in ok])):
        results[i] = doc.to_dict()
    return results


def run_partition(part, output_dir, model_path, fmt, text_field="text", id_field="id",
                  max_chars=100_000, batch=256):
    """Tag one partition and commit its output atomically. Returns its stats."""
    final = os.path.join(output_dir, f"part-{part['index']:05d}.jsonl")
    stats_path = final[:-6] + ".stats.json"
    if os.path.exists(final):
        with open(stats_path, encoding="utf-8") as f:
            return dict(json.load(f), skipped=True)
    tagger = get_tagger(model_path)
    stats = {"index": part["index"], "documents": 0, "tagged": 0, "tokens": 0, "entities": 0,
             "problems": {}, "seconds": 0.0}
    started = time.perf_counter()
    tmp = f"{final}.tmp-{uuid.uuid4().hex}"
    pending = []

    def flush(out):
        docs = tagger.tag_texts([text for _, text in pending])
        for (doc_id, _), doc in zip(pending, docs):
            out.write(json.dumps({"id": doc_id, "entities": [e.to_dict() for e in doc.ents],
                                  "model": tagger.name}, ensure_ascii=False) + "\n")
            stats["tokens"] += doc.n_tokens
            stats["entities"] += len(doc.ents)
            stats["tagged"] += 1
        pending.clear()

    try:
        with open(tmp, "w", encoding="utf-8") as out:
            for doc_id, text, problem in _read_documents(part, fmt, text_field, id_field):
                stats["documents"] += 1
                if problem is None and not text.strip():
                    problem = "empty"
                if problem is None and len(text) > max_chars:
                    problem = f"too_long: {len(text)} characters (limit {max_chars})"
                if problem is not None:
                    flush(out)             # keep the input order in the output
                    kind = problem.split(":")[0]
                    stats["problems"][kind] = stats["problems"].get(kind, 0) + 1
                    out.write(json.dumps({"id": doc_id, "error": problem, "model": tagger.name},
                                         ensure_ascii=False) + "\n")
                    continue
                pending.append((doc_id, text))
                if len(pending) >= batch:
                    flush(out)
            flush(out)
            out.flush()
            os.fsync(out.fileno())
        stats["seconds"] = round(time.perf_counter() - started, 3)
        write_json_atomically(stats_path, stats)
        os.replace(tmp, final)           # the commit point of this partition
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dict(stats, skipped=False)


# -- the job -----------------------------------------------------------------

def _manifest(parts, fmt, model_path, text_field, id_field, max_chars):
    return {"format": fmt, "model_sha256": file_sha256(model_path), "text_field": text_field,
            "id_field": id_field, "max_chars": max_chars, "partitions": parts}


def tag_corpus(input_glob, output_dir, model_path, fmt="lines", scheduler=None, workers=None,
               partition_size=10_000, text_field="text", id_field="id", max_chars=100_000,
               progress=True, log=print):
    """Run the whole job on a Dask cluster; returns the summed stats."""
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    model_path = os.path.abspath(model_path)
    get_tagger(model_path)             # fail here, not in every task, if the model is bad
    parts = plan(input_glob, fmt, partition_size)
    os.makedirs(output_dir, exist_ok=True)
    manifest = _manifest(parts, fmt, model_path, text_field, id_field, max_chars)
    manifest_path = os.path.join(output_dir, "_manifest.json")
    if os.path.exists(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            if json.load(f) != manifest:
                raise ValueError(f"{output_dir} holds the output of a different job (other "
                                 f"inputs, model or settings); use a new --output directory")
    else:
        write_json_atomically(manifest_path, manifest)
    todo = [p for p in parts
            if not os.path.exists(os.path.join(output_dir, f"part-{p['index']:05d}.jsonl"))]
    done_before = len(parts) - len(todo)
    log(f"{len(parts)} partitions; {done_before} already done (skipped), {len(todo)} to tag")

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1,
                               processes=True, dashboard_address=":0")
        client = Client(cluster)
    try:
        if client.dashboard_link:
            log(f"Dask dashboard: {client.dashboard_link}")
        totals = {"partitions": len(parts), "skipped": done_before, "documents": 0, "tagged": 0,
                  "tokens": 0, "entities": 0, "problems": {}}
        pending_indices = {p["index"] for p in todo}
        for p in parts:
            if p["index"] not in pending_indices:
                _add(totals, run_partition(p, output_dir, model_path, fmt, text_field, id_field,
                                           max_chars))
        futures = [client.submit(run_partition, p, output_dir, model_path, fmt, text_field,
                                 id_field, max_chars, key=f"fastner-part-{p['index']}-"
                                 f"{manifest['model_sha256'][:8]}", pure=False) for p in todo]
        started = time.perf_counter()
        bar = tqdm(total=len(todo), unit="part", disable=None if progress else True,
                   desc="tagging")
        for future in as_completed(futures):
            stats = future.result()
            _add(totals, stats)
            bar.update(1)
            bar.set_postfix(docs=totals["documents"], refresh=False)
        bar.close()
        totals["seconds"] = round(time.perf_counter() - started, 2)
        # every partition is committed: what a killed task left half-written is rubbish
        # (partitions' own temps are NAME.tmp-*; fastner.io's for stats and the manifest,
        # .NAME.tmp-*, which a plain * does not match)
        for pattern in ("*.tmp-*", ".*.tmp-*"):
            for leftover in glob.glob(os.path.join(glob.escape(output_dir), pattern)):
                os.unlink(leftover)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return totals


def _add(totals, stats):
    for key in ("documents", "tagged", "tokens", "entities"):
        totals[key] += stats[key]
    for kind, n in stats["problems"].items():
        totals["problems"][kind] = totals["problems"].get(kind, 0) + n
