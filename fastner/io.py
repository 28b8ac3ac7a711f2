"""Model and checkpoint files: NumPy .npz archives written atomically and read
without pickle.

Every file holds named arrays plus one ``__meta__`` entry, a JSON document
(stored as a 0-d unicode array) naming the file's format and version. Writing
goes to a temporary file in the target directory, is flushed to disk, and is
renamed over the target, so a reader never sees a half-written file.
"""
import glob
import hashlib
import json
import os
import shutil
import tempfile
import zipfile

import numpy as np

MODEL_FORMAT = "fastner-model"
CHECKPOINT_FORMAT = "fastner-checkpoint"
# per format: version 2 checkpoints keep only the rows training can change of the
# word table (fastner.train); version 1 ones held all 400k rows four times
FORMAT_VERSIONS = {MODEL_FORMAT: 1, CHECKPOINT_FORMAT: 2}


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


def _temp_prefix(path):
    """Temporary files for ``path`` are ``.NAME.tmp-*`` beside it: a crash leaves one
    behind, and remove_stale_temps can find exactly those, nobody else's."""
    return f".{os.path.basename(path)}.tmp-"


def remove_stale_temps(path):
    """Delete temporary files a killed writer of ``path`` left behind; their number."""
    directory = os.path.dirname(os.path.abspath(path))
    stale = glob.glob(os.path.join(glob.escape(directory), glob.escape(_temp_prefix(path)) + "*"))
    for tmp in stale:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    return len(stale)


def _write_atomically(path, write, mode):
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, rename."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), dir=directory)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)        # mkstemp makes it private; models and cards are for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz(path, fmt, arrays, meta, compress=True):
    """Atomically write ``arrays`` and ``meta`` (JSON-able) to ``path``.

    ``compress=False`` trades disk for speed (checkpoints, written every epoch)."""
    doc = dict(meta, format=fmt, format_version=FORMAT_VERSIONS[fmt])
    payload = dict(arrays, __meta__=np.array(json.dumps(doc)))
    _write_atomically(path, lambda f: (np.savez_compressed if compress else np.savez)(
        f, **payload), "wb")


def write_json_atomically(path, obj):
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    _write_atomically(path, lambda f: f.write(json.dumps(obj, indent=2) + "\n"), "w")


def write_text_atomically(path, write):
    """Call ``write(f)`` on a text file that appears at ``path`` only when complete."""
    _write_atomically(path, write, "w")


def copy_atomically(source, path):
    """Copy the file ``source`` to ``path``, which appears only when complete."""
    def write(f):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f, 1 << 20)
    _write_atomically(path, write, "wb")


def write_lines_atomically(path, records):
    """Write one JSON object per line to ``path`` atomically (the training log)."""
    _write_atomically(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in records), "w")


# Deflate expands at most ~1032:1, so a member cannot hold more than this many bytes per
# stored byte; a header that promises more is forged, and is refused before any allocation.
_MAX_EXPANSION = 1100
# Parameters are real numbers (and uint8 strings); the metadata is one unicode string.
_ARRAY_KINDS = "biuf"


def _check_members(path):
    """Read each array's header and refuse, before np.load allocates anything, an array
    larger than its file could hold or of a non-real dtype (complex, object, void)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ModelFileError(f"{path}: array file format {version} is not "
                                         f"supported")
                shape, _, dtype = read_header(member)
            name = info.filename.removesuffix(".npy")
            if dtype.kind not in (_ARRAY_KINDS + "U" if name == "__meta__" else _ARRAY_KINDS):
                raise ModelFileError(f"{path}: array {name!r} has dtype {dtype}; fastner files "
                                     f"hold real numbers only")
            needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
            can_hold = min(info.file_size, info.compress_size * _MAX_EXPANSION)
            if needed > can_hold:
                raise ModelFileError(f"{path}: array {name!r} declares shape {shape} "
                                     f"({needed:,} bytes) but its file holds at most "
                                     f"{can_hold:,}: corrupt or forged")


def load_npz(path, fmt):
    """(arrays, meta) of a file written by save_npz; ModelFileError on anything wrong."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    try:
        _check_members(path)
        # Open the file ourselves: np.load leaks its handle when the zip is corrupt.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise ModelFileError(f"{path}: not a readable fastner file (truncated or corrupt?): "
                             f"{type(err).__name__}: {err}") from None
    if "__meta__" not in arrays:
        raise ModelFileError(f"{path}: not a fastner file (no __meta__ entry)")
    return arrays, _checked_meta(path, arrays.pop("__meta__"), fmt)


def read_meta(path, fmt):
    """The ``__meta__`` document of a file written by save_npz, without reading its
    arrays (``fastner --version`` names the model from it); ModelFileError as load_npz."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    try:
        _check_members(path)
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as archive:
            if "__meta__" not in archive.files:
                raise ModelFileError(f"{path}: not a fastner file (no __meta__ entry)")
            raw = archive["__meta__"]
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise ModelFileError(f"{path}: not a readable fastner file (truncated or corrupt?): "
                             f"{type(err).__name__}: {err}") from None
    return _checked_meta(path, raw, fmt)


def _checked_meta(path, raw, fmt):
    """The metadata dict from a file's 0-d ``__meta__`` array, its format and version
    checked."""
    try:
        meta = json.loads(str(raw))
    except ValueError as err:
        raise ModelFileError(f"{path}: metadata is not valid JSON: {err}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelFileError(f"{path}: expected a {fmt} file; got {found!r}")
    if meta.get("format_version") != FORMAT_VERSIONS[fmt]:
        raise ModelFileError(f"{path}: {fmt} format version {meta.get('format_version')!r} is "
                             f"not supported (this fastner reads version "
                             f"{FORMAT_VERSIONS[fmt]})")
    return meta
