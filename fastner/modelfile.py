"""The model file format: a WindowTagger to and from named arrays in an .npz file
written by fastner.io (atomic, no pickle), and every check on what is read.

A model file holds the configuration (``WindowTagger.config()``) and metadata
(the model card) in its ``__meta__`` entry, the vocabulary as one UTF-8 array,
any string lists a feature needs (a gazetteer's entries) as ``strings.NAME``, UTF-8
arrays too, and one array per parameter, ``param.NAME``. Tables of QUANTIZE_ROWS rows or more
are stored as ``param.NAME.q8`` (int8) with ``param.NAME.scale`` (one float32 per
row; |error| ≤ scale/2 = max|row|/254), and the word-table rows training changed
besides as ``param.NAME.f16`` at ``param.NAME.f16_rows``: the 400k-word GloVe
table shrinks from 80 MB to 20 MB, and its learned rows lose almost nothing.
An ensemble's word table (fastner.ensemble) holds its k members' vectors side by side,
and the rows no member's training changed are the same GloVe vectors k times over: when
they are, only the first block is stored (``param.NAME.tile`` = k), and the precise rows
keep every block.
Checkpoints use the same arrays unquantized (fastner.train).
"""
import numpy as np

from fastner import io
from fastner.features import Vocab, build_feature
from fastner.model import WindowTagger
from fastner.tags import TagSet

QUANTIZE_ROWS = 4096     # tables at least this tall are saved as int8 + row scales


def model_arrays(model, quantize=False, precise_rows=None):
    """Everything the model needs, as named arrays; see the module docstring."""
    arrays = {}
    for name, view in model.params.items():
        if quantize and name.startswith("table.") and view.shape[0] >= QUANTIZE_ROWS:
            tile = _tile(model, name, view, precise_rows)
            if tile > 1:
                arrays[f"param.{name}.tile"] = np.array(tile, dtype=np.int32)
                view = view[:, :view.shape[1] // tile]
            scale = np.abs(view).max(axis=1) / 127.0
            scale[scale == 0] = 1.0
            arrays[f"param.{name}.q8"] = np.rint(view / scale[:, None]).astype(np.int8)
            arrays[f"param.{name}.scale"] = scale.astype(np.float32)
            if precise_rows is not None and name == "table.word":
                rows = np.unique(np.asarray(precise_rows, dtype=np.int32))
                arrays[f"param.{name}.f16_rows"] = rows
                arrays[f"param.{name}.f16"] = model.params[name][rows].astype(np.float16)
        else:
            arrays[f"param.{name}"] = view
    arrays["vocab"] = model.features[0].vocab.encoded()
    for f in model.features:
        for name, strings in getattr(f, "strings", dict)().items():
            arrays[f"strings.{name}"] = io.encode_strings(strings)
    return arrays


def _tile(model, name, view, precise_rows):
    """k if ``view`` is an ensemble's word table (model.word_tile = k) whose rows outside
    ``precise_rows`` repeat their first block k times, else 1."""
    k = getattr(model, "word_tile", 1)
    if name != "table.word" or k < 2 or precise_rows is None or view.shape[1] % k:
        return 1
    others = np.ones(view.shape[0], bool)
    others[np.asarray(precise_rows, dtype=np.int64)] = False
    d = view.shape[1] // k
    first = view[others, :d]
    return k if all(np.array_equal(view[others, i * d:(i + 1) * d], first)
                    for i in range(1, k)) else 1


def save_model(model, path, metadata=None, quantize=True, precise_rows=None):
    """Write ``model`` to ``path`` atomically, with ``metadata`` (the model card)."""
    # Stored, not deflated: the int8 table barely compresses (27.7 against 24.6 MB
    # for the shipped model) and inflating it cost 0.1 s of every process start.
    io.save_npz(path, io.MODEL_FORMAT, model_arrays(model, quantize, precise_rows),
                {"config": model.config(), "metadata": metadata or {}}, compress=False)


def model_from_arrays(arrays, meta, path="<model>"):
    """The WindowTagger that ``arrays`` and ``meta`` describe; ModelFileError naming
    ``path`` for anything missing, misshapen or not finite."""
    try:
        config = meta["config"]
        vocab = Vocab(io.decode_strings(arrays["vocab"])[2:])
        strings = {name.removeprefix("strings."): io.decode_strings(array)
                   for name, array in arrays.items() if name.startswith("strings.")}
        features = [build_feature(c, vocab, strings) for c in config["features"]]
        model = WindowTagger(features, TagSet(config["entity_types"]),
                             half_window=config["half_window"], hidden=config["hidden"],
                             activation=config["activation"], loss=config["loss"],
                             dropout=config.get("dropout", 0.0))
        model.first_stage_file = config.get("first_stage")
        reference = model.first_stage_file
        if model.needs_first_pass and not (isinstance(reference, dict) and any(
                isinstance(reference.get(key), str) for key in ("file", "model"))):
            raise ValueError("a docvote model must name its first stage (a file or a model)")
    except (KeyError, TypeError, ValueError) as err:
        raise io.ModelFileError(f"{path}: model configuration is incomplete or invalid "
                                f"({type(err).__name__}: {err})") from None
    for name, view in model.params.items():
        if f"param.{name}" not in arrays and f"param.{name}.q8" in arrays:
            _dequantize(arrays, name, view, path)
            continue
        stored = arrays.get(f"param.{name}")
        if stored is None:
            raise io.ModelFileError(f"{path}: parameter {name!r} is missing")
        if stored.shape != view.shape:
            raise io.ModelFileError(f"{path}: parameter {name!r} has shape {stored.shape}; "
                                    f"the configuration needs {view.shape}")
        view[...] = stored
    if not np.all(np.isfinite(model.flat)):
        raise io.ModelFileError(f"{path}: parameters contain NaN or infinity")
    return model


def _dequantize(arrays, name, view, path):
    """Fill ``view`` from int8 rows and their scales, then the precise float16 rows."""
    q8, scale = arrays[f"param.{name}.q8"], arrays.get(f"param.{name}.scale")
    if q8.dtype != np.int8 or scale is None or q8.ndim != 2 or scale.shape != (q8.shape[0],):
        raise io.ModelFileError(f"{path}: quantized parameter {name!r} is malformed")
    tile = arrays.get(f"param.{name}.tile")
    k = 1
    if tile is not None:
        if tile.shape != () or tile.dtype.kind != "i" or not 2 <= int(tile) <= 64:
            raise io.ModelFileError(f"{path}: the tiling of parameter {name!r} is malformed")
        k = int(tile)
    if (q8.shape[0], q8.shape[1] * k) != view.shape:
        raise io.ModelFileError(f"{path}: parameter {name!r} has shape "
                                f"{(q8.shape[0], q8.shape[1] * k)}; the configuration needs "
                                f"{view.shape}")
    d = q8.shape[1]
    for i in range(k):                                  # the stored block, k times over
        np.multiply(q8, scale[:, None], out=view[:, i * d:(i + 1) * d], casting="unsafe")
    rows, f16 = arrays.get(f"param.{name}.f16_rows"), arrays.get(f"param.{name}.f16")
    if rows is not None:
        if (f16 is None or rows.ndim != 1 or f16.shape != (len(rows), view.shape[1])
                or (len(rows) and (rows.min() < 0 or rows.max() >= view.shape[0]))):
            raise io.ModelFileError(f"{path}: precise rows of {name!r} are malformed")
        view[rows] = f16


def load_model(path):
    """Read a model file; the model's ``metadata`` is its card."""
    arrays, meta = io.load_npz(path, io.MODEL_FORMAT)
    model = model_from_arrays(arrays, meta, path)
    model.metadata = meta.get("metadata", {})
    return model
