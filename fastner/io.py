"""Model and checkpoint files: NumPy .npz archives written atomically and read
without pickle.

Every file holds named arrays plus one ``__meta__`` entry, a JSON document
(stored as a 0-d unicode array) naming the file's format and version. Writing
goes to a temporary file in the target directory, is flushed to disk, and is
renamed over the target, so a reader never sees a half-written file.
"""
import hashlib
import json
import os
import tempfile
import uuid
import zipfile

import numpy as np

MODEL_FORMAT = "fastner-model"
CHECKPOINT_FORMAT = "fastner-checkpoint"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model or checkpoint file that is missing, truncated, corrupt or incompatible."""


def file_sha256(path):
    """Hex SHA-256 of a file's bytes (data provenance in model cards, job manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def encode_strings(strings):
    """A list of strings without newlines as one uint8 array (UTF-8, newline-joined)."""
    for s in strings:
        if "\n" in s:
            raise ValueError(f"cannot store a string containing a newline: {s!r}")
    return np.frombuffer("\n".join(strings).encode("utf-8"), dtype=np.uint8).copy()


def decode_strings(array):
    text = array.tobytes().decode("utf-8")
    return text.split("\n") if text else []


def save_npz(path, fmt, arrays, meta, compress=True):
    """Atomically write ``arrays`` and ``meta`` (JSON-able) to ``path``.

    ``compress=False`` trades disk for speed (checkpoints, written every epoch)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    doc = dict(meta, format=fmt, format_version=FORMAT_VERSION)
    payload = dict(arrays, __meta__=np.array(json.dumps(doc)))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            (np.savez_compressed if compress else np.savez)(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)        # mkstemp makes it private; a model is for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomically(path, obj):
    """Write ``obj`` as indented JSON to a temporary file beside ``path``, then rename."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"     # unique even for concurrent writers
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def load_npz(path, fmt):
    """(arrays, meta) of a file written by save_npz; ModelFileError on anything wrong."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    try:
        # Open the file ourselves: np.load leaks its handle when the zip is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise ModelFileError(f"{path}: not a readable fastner file (truncated or corrupt?): "
                             f"{type(err).__name__}: {err}") from None
    if "__meta__" not in arrays:
        raise ModelFileError(f"{path}: not a fastner file (no __meta__ entry)")
    try:
        meta = json.loads(str(arrays.pop("__meta__")))
    except ValueError as err:
        raise ModelFileError(f"{path}: metadata is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelFileError(f"{path}: expected a {fmt} file; got {found!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: {fmt} format version {meta.get('format_version')!r} is "
                             f"not supported (this fastner reads version {FORMAT_VERSION})")
    return arrays, meta
