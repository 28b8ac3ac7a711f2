"""fastner.io: files written atomically (a failure at any step leaves the previous
file whole and no temporary file behind) and read without pickle, refusing whatever
is not a fastner file with an error that names it."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import zipfile
from io import BytesIO

import numpy as np
import pytest

from fastner import io

FMT = io.MODEL_FORMAT


def save(path, value=1.0):
    io.save_npz(path, FMT, {"w": np.full(4, value, np.float32)}, {"name": "m"})


def temps(directory):
    return sorted(n for n in os.listdir(directory) if ".tmp-" in n)


def test_saved_file_round_trips_and_is_readable_by_others(tmp_path):
    path = tmp_path / "m.npz"
    save(path, 3.0)
    arrays, meta = io.load_npz(path, FMT)
    assert arrays["w"].tolist() == [3.0] * 4
    assert meta == {"name": "m", "format": FMT, "format_version": io.FORMAT_VERSIONS[FMT]}
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert io.read_meta(path, FMT) == meta
    assert temps(tmp_path) == []


@pytest.mark.parametrize("step", ["write", "fsync", "rename"])
def test_a_failure_at_any_step_keeps_the_old_file_and_leaves_no_temporary(
        tmp_path, monkeypatch, step):
    path = tmp_path / "m.npz"
    save(path, 1.0)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")
    if step == "write":
        monkeypatch.setattr(np, "savez_compressed", fail)
    elif step == "fsync":
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="No space left"):
        save(path, 2.0)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert io.load_npz(path, FMT)[0]["w"].tolist() == [1.0] * 4
    assert temps(tmp_path) == []


def test_the_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b)))
    io.write_json_atomically(tmp_path / "card.json", {"a": 1})
    assert calls == ["fsync", "replace"]


def test_a_writer_killed_mid_write_leaves_the_old_file_whole(tmp_path):
    path = tmp_path / "m.npz"
    save(path, 1.0)
    before = path.read_bytes()
    # the child writes a large file and is killed while it writes (its write blocks on a
    # pipe we never read, so the kill lands mid-write, not before or after)
    child = r"""
import os, sys
import numpy as np
from fastner import io
r, w = os.pipe()
real = np.savez_compressed
def slow(f, **arrays):
    f.write(b"PK" * 1000)
    f.flush()
    sys.stdout.write("writing\n"); sys.stdout.flush()
    os.read(r, 1)                          # blocks until killed
    real(f, **arrays)
np.savez_compressed = slow
io.save_npz(sys.argv[1], io.MODEL_FORMAT, {"w": np.zeros(4, np.float32)}, {"name": "m"})
"""
    with subprocess.Popen([sys.executable, "-c", child, str(path)], stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout.readline() == "writing\n"
        assert len(temps(tmp_path)) == 1          # the half-written file is a temporary
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert path.read_bytes() == before
    assert io.load_npz(path, FMT)[0]["w"].tolist() == [1.0] * 4
    assert io.remove_stale_temps(path) == 1       # what the next writer cleans up
    assert temps(tmp_path) == []


def test_remove_stale_temps_removes_only_the_files_own_temporaries(tmp_path):
    for name in (".m.npz.tmp-abc", ".m.npz.tmp-def", ".other.npz.tmp-abc", "m.npz.tmp-x",
                 ".m.npz.tm-abc"):
        (tmp_path / name).write_text("x")
    assert io.remove_stale_temps(tmp_path / "m.npz") == 2
    assert sorted(os.listdir(tmp_path)) == [".m.npz.tm-abc", ".other.npz.tmp-abc",
                                            "m.npz.tmp-x"]
    assert io.remove_stale_temps(tmp_path / "m.npz") == 0


def test_text_json_and_lines_writers_are_atomic_too(tmp_path, monkeypatch):
    card, log, text = tmp_path / "c.json", tmp_path / "l.jsonl", tmp_path / "t.txt"
    io.write_json_atomically(card, {"a": [1, 2]})
    io.write_lines_atomically(log, [{"e": 1}, {"e": 2}])
    io.write_text_atomically(text, lambda f: f.write("é\n"))
    assert json.loads(card.read_text()) == {"a": [1, 2]}
    assert card.read_text().endswith("\n")
    assert [json.loads(x) for x in log.read_text().splitlines()] == [{"e": 1}, {"e": 2}]
    assert text.read_bytes() == "é\n".encode()
    monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(OSError("x")))
    for write in (lambda: io.write_json_atomically(card, {"b": 1}),
                  lambda: io.write_lines_atomically(log, [{"e": 3}]),
                  lambda: io.write_text_atomically(text, lambda f: f.write("new"))):
        with pytest.raises(OSError):
            write()
    assert json.loads(card.read_text()) == {"a": [1, 2]}
    assert text.read_bytes() == "é\n".encode()
    assert temps(tmp_path) == []


def test_a_writer_that_raises_keeps_the_old_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("old")

    def half(f):
        f.write("half")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        io.write_text_atomically(path, half)
    assert path.read_text() == "old"
    assert temps(tmp_path) == []


def test_strings_round_trip_and_newlines_are_refused():
    words = ["EU", "rejects", "Günther", ""]
    assert io.decode_strings(io.encode_strings(words)) == words
    assert io.decode_strings(io.encode_strings([])) == []
    assert io.encode_strings(["ab"]).dtype == np.uint8
    with pytest.raises(ValueError, match="newline"):
        io.encode_strings(["a", "b\nc"])


def test_file_sha256_is_the_files_digest(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"a" * (3 << 20))          # more than one read block
    assert io.file_sha256(path) == hashlib.sha256(b"a" * (3 << 20)).hexdigest()


def _forge(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("reader", [io.load_npz, io.read_meta])
def test_what_is_not_a_fastner_file_is_refused_naming_the_file(tmp_path, reader):
    meta = np.array(json.dumps({"format": FMT, "format_version": io.FORMAT_VERSIONS[FMT]}))
    cases = {
        "missing.npz": None,
        "text.npz": b"hello",
        "empty.npz": b"",
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
    good = tmp_path / "good.npz"
    save(good)
    (tmp_path / "truncated.npz").write_bytes(good.read_bytes()[:-40])
    _forge(tmp_path / "nometa.npz", {"w": np.zeros(2)})
    _forge(tmp_path / "badjson.npz", {"__meta__": np.array("{not json")})
    _forge(tmp_path / "listmeta.npz", {"__meta__": np.array("[1]")})
    _forge(tmp_path / "otherformat.npz", {"__meta__": np.array(json.dumps(
        {"format": io.CHECKPOINT_FORMAT, "format_version": 2}))})
    _forge(tmp_path / "version.npz", {"__meta__": np.array(json.dumps(
        {"format": FMT, "format_version": io.FORMAT_VERSIONS[FMT] + 1}))})
    _forge(tmp_path / "complex.npz", {"__meta__": meta, "w": np.zeros(2, np.complex64)})
    _forge(tmp_path / "unicode.npz", {"__meta__": meta, "w": np.array(["a"])})
    expected = {"missing.npz": "no such model file", "text.npz": "not a readable",
                "empty.npz": "not a readable", "truncated.npz": "not a readable",
                "nometa.npz": "no __meta__", "badjson.npz": "not valid JSON",
                "listmeta.npz": "expected a fastner-model file; got None",
                "otherformat.npz": "got 'fastner-checkpoint'",
                "version.npz": "version 2 is not supported",
                "complex.npz": "dtype complex64", "unicode.npz": "dtype <U1"}
    for name, message in expected.items():
        with pytest.raises(io.ModelFileError) as err:
            reader(tmp_path / name, FMT)
        assert str(err.value).startswith(str(tmp_path / name) + ": "), name
        assert message in str(err.value), (name, str(err.value))
        assert len(str(err.value)) < 300, name


def test_an_object_array_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "pickle.npz"
    meta = np.array(json.dumps({"format": FMT, "format_version": io.FORMAT_VERSIONS[FMT]}))
    with open(path, "wb") as f:
        np.savez(f, __meta__=meta, w=np.array([{"a": 1}], dtype=object))
    with pytest.raises(io.ModelFileError, match="dtype object"):
        io.load_npz(path, FMT)


def _rewrite_member(src, dst, member, header_shape):
    """Copy ``src`` to ``dst`` with ``member``'s header declaring ``header_shape``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == member:
                arr_bytes = data[data.index(b"\n") + 1:]
                header = {"descr": "<f4", "fortran_order": False, "shape": header_shape}
                buf = BytesIO()
                np.lib.format.write_array_header_1_0(buf, header)     # magic included
                data = buf.getvalue() + arr_bytes
            zout.writestr(info, data)


def test_a_header_promising_more_than_the_file_holds_is_refused_before_allocating(tmp_path):
    good = tmp_path / "good.npz"
    io.save_npz(good, FMT, {"w": np.zeros(4, np.float32)}, {}, compress=False)
    forged = tmp_path / "forged.npz"
    _rewrite_member(good, forged, "w.npy", (1 << 40,))
    with pytest.raises(io.ModelFileError, match="declares shape .* but its file holds"):
        io.load_npz(forged, FMT)
    exact = tmp_path / "exact.npz"                 # the same size it really holds: fine
    _rewrite_member(good, exact, "w.npy", (4,))
    assert io.load_npz(exact, FMT)[0]["w"].shape == (4,)


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_both_npy_header_versions_numpy_writes_are_read(tmp_path, version):
    meta = json.dumps({"format": FMT, "format_version": io.FORMAT_VERSIONS[FMT]})
    path = tmp_path / "v.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in (("__meta__", np.array(meta)), ("w", np.arange(3, dtype=np.float32))):
            buf = BytesIO()
            np.lib.format.write_array(buf, array, version=version)
            archive.writestr(name + ".npy", buf.getvalue())
    arrays, _ = io.load_npz(path, FMT)
    assert arrays["w"].tolist() == [0.0, 1.0, 2.0]
    with zipfile.ZipFile(path, "w") as archive:            # version 3.0: not ours
        buf = BytesIO()
        np.lib.format.write_array(buf, np.array(meta), version=(3, 0))
        archive.writestr("__meta__.npy", buf.getvalue())
    with pytest.raises(io.ModelFileError, match=r"v.npz: array file format \(3, 0\) is not "
                                                r"supported"):
        io.load_npz(path, FMT)


def test_errors_name_the_kind_of_failure(tmp_path):
    (tmp_path / "text.npz").write_bytes(b"hello")
    for reader in (io.load_npz, io.read_meta):
        with pytest.raises(io.ModelFileError, match="BadZipFile: File is not a zip file"):
            reader(tmp_path / "text.npz", FMT)


def test_pickles_are_refused_even_past_the_header_check(tmp_path, monkeypatch):
    """np.load itself is called with allow_pickle=False: a second line of defence."""
    path = tmp_path / "pickle.npz"
    meta = np.array(json.dumps({"format": FMT, "format_version": io.FORMAT_VERSIONS[FMT]}))
    with open(path, "wb") as f:
        np.savez(f, __meta__=meta, w=np.array([{"a": 1}], dtype=object))
    monkeypatch.setattr(io, "_check_members", lambda path: None)
    with pytest.raises(io.ModelFileError, match="Object arrays cannot be loaded"):
        io.load_npz(path, FMT)
    pickled_meta = tmp_path / "meta.npz"
    with open(pickled_meta, "wb") as f:
        np.savez(f, __meta__=np.array([{"format": FMT}], dtype=object))
    with pytest.raises(io.ModelFileError, match="Object arrays cannot be loaded"):
        io.read_meta(pickled_meta, FMT)


@pytest.mark.parametrize("compress,method", [(True, zipfile.ZIP_DEFLATED),
                                             (False, zipfile.ZIP_STORED)])
def test_compress_chooses_deflate_or_stored_members(tmp_path, compress, method):
    path = tmp_path / "m.npz"
    io.save_npz(path, FMT, {"w": np.zeros(1000, np.float32)}, {}, compress=compress)
    with zipfile.ZipFile(path) as archive:
        assert {info.compress_type for info in archive.infolist()} == {method}


def test_json_is_written_indented_by_two(tmp_path):
    io.write_json_atomically(tmp_path / "c.json", {"a": [1], "b": "é"})
    assert (tmp_path / "c.json").read_text(encoding="utf-8") == \
        json.dumps({"a": [1], "b": "é"}, indent=2) + "\n"


def test_text_files_are_utf8_whatever_the_locale(tmp_path):
    """Under the POSIX locale without UTF-8 mode Python's default encoding is ASCII; a
    model card or training log must still be written as UTF-8 (here, then in a process
    under that locale)."""
    io.write_text_atomically(tmp_path / "here.txt", lambda f: f.write("G\xfcnther\n"))
    assert (tmp_path / "here.txt").read_bytes() == "Günther\n".encode()
    child = ("import sys; from fastner import io\n"
             "io.write_text_atomically(sys.argv[1], lambda f: f.write('G\\xfcnther\\n'))\n"
             "io.write_json_atomically(sys.argv[2], {'name': 'G\\xfcnther'})\n")
    env = dict(os.environ, LC_ALL="POSIX", LANG="POSIX", PYTHONUTF8="0",
               PYTHONCOERCECLOCALE="0", PYTHONIOENCODING="ascii")
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "t.txt"),
                           str(tmp_path / "c.json")], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t.txt").read_bytes() == "Günther\n".encode()
    assert json.loads((tmp_path / "c.json").read_bytes().decode("utf-8")) == {"name": "Günther"}


def test_declared_sizes_are_checked_exactly_and_without_overflow(tmp_path):
    good = tmp_path / "good.npz"
    io.save_npz(good, FMT, {"w": np.zeros(4, np.float32)}, {}, compress=False)
    with zipfile.ZipFile(good) as archive:
        member_bytes = archive.getinfo("w.npy").file_size     # header and data
    assert member_bytes % 4 == 0
    # declaring exactly as many float32 bytes as the member holds passes the size check
    # (the data is then short, which np.load finds); one more element does not
    at_limit, over = tmp_path / "at.npz", tmp_path / "over.npz"
    _rewrite_member(good, at_limit, "w.npy", (member_bytes // 4,))
    _rewrite_member(good, over, "w.npy", (member_bytes // 4 + 1,))
    with pytest.raises(io.ModelFileError, match="not a readable fastner file"):
        io.load_npz(at_limit, FMT)
    with pytest.raises(io.ModelFileError, match="declares shape"):
        io.load_npz(over, FMT)
    # 2³² × 2³² elements: 2⁶⁴, which int64 arithmetic would wrap to 0
    wrapped = tmp_path / "wrapped.npz"
    _rewrite_member(good, wrapped, "w.npy", (1 << 32, 1 << 32))
    with pytest.raises(io.ModelFileError, match="declares shape"):
        io.load_npz(wrapped, FMT)
