"""fastner.modelfile: a model file round-trips, and one whose arrays are wrong — not
finite, misshapen, missing, out of range, of the wrong dtype — is refused with an
error that names the file, never loaded."""
import numpy as np
import pytest

from fastner import io, modelfile
from fastner.modelfile import load_model, save_model


@pytest.fixture
def stored(tiny_model_path):
    """(arrays, meta) of the session's tiny model, as its file holds them."""
    return io.load_npz(tiny_model_path, io.MODEL_FORMAT)


def rewrite(tmp_path, arrays, meta, name="bad.npz"):
    path = tmp_path / name
    io.save_npz(path, io.MODEL_FORMAT, arrays, meta, compress=False)
    return path


def refused(path, message):
    with pytest.raises(io.ModelFileError) as err:
        load_model(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value), str(err.value)


def test_a_saved_model_loads_with_the_same_parameters_and_card(tmp_path, tiny_model_path):
    model = load_model(tiny_model_path)
    path = tmp_path / "again.npz"
    save_model(model, path, {"name": "again"})
    again = load_model(path)
    np.testing.assert_array_equal(again.flat, model.flat)
    assert again.metadata == {"name": "again"}
    assert again.config() == model.config()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("param", ["param.W", "param.c"])
def test_parameters_that_are_not_finite_are_refused(tmp_path, stored, value, param):
    arrays, meta = stored
    arrays = dict(arrays)
    arrays[param] = arrays[param].copy()
    arrays[param].flat[-1] = value
    refused(rewrite(tmp_path, arrays, meta), "NaN or infinity")


def test_missing_or_misshapen_parameters_are_refused(tmp_path, stored):
    arrays, meta = stored
    without = {k: v for k, v in arrays.items() if k != "param.U"}
    refused(rewrite(tmp_path, without, meta), "parameter 'U' is missing")
    wrong = dict(arrays, **{"param.U": arrays["param.U"][:-1]})
    refused(rewrite(tmp_path, wrong, meta), "parameter 'U' has shape")
    refused(rewrite(tmp_path, {k: v for k, v in arrays.items() if k != "vocab"}, meta),
            "configuration is incomplete or invalid (KeyError")
    no_config = {k: v for k, v in meta.items() if k != "config"}
    refused(rewrite(tmp_path, arrays, no_config), "configuration is incomplete")
    bad_act = dict(meta, config=dict(meta["config"], activation="swish"))
    refused(rewrite(tmp_path, arrays, bad_act), "configuration is incomplete or invalid")


@pytest.fixture
def quantized(tmp_path, tiny_model_path, monkeypatch):
    """The tiny model saved as the shipped one is: word table int8 + row scales, its
    rows 2..9 besides in float16."""
    monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", 1)
    model = load_model(tiny_model_path)
    path = tmp_path / "q.npz"
    save_model(model, path, precise_rows=np.arange(2, 10))
    arrays, meta = io.load_npz(path, io.MODEL_FORMAT)
    assert "param.table.word.q8" in arrays and "param.table.word" not in arrays
    return model, arrays, meta


def test_a_quantized_table_loads_within_its_error_bound(quantized, tmp_path):
    model, arrays, meta = quantized
    loaded = load_model(rewrite(tmp_path, arrays, meta, "ok.npz"))
    word = model.params["table.word"]
    got = loaded.params["table.word"]
    bound = np.abs(word).max(axis=1, keepdims=True) / 254 + 1e-7
    assert np.all(np.abs(got - word) <= bound)
    np.testing.assert_array_equal(got[2:10], word[2:10].astype(np.float16))


def test_precise_rows_out_of_range_are_refused_at_the_exact_boundary(quantized, tmp_path):
    _, arrays, meta = quantized
    n = arrays["param.table.word.q8"].shape[0]
    f16 = arrays["param.table.word.f16"]
    for last_row, ok in ((n - 1, True), (n, False), (n + 100, False), (-1, False)):
        rows = arrays["param.table.word.f16_rows"].copy()
        rows[-1] = last_row
        path = rewrite(tmp_path, dict(arrays, **{"param.table.word.f16_rows": rows}), meta,
                       f"rows{last_row}.npz")
        if ok:
            np.testing.assert_array_equal(load_model(path).params["table.word"][n - 1],
                                          f16[-1].astype(np.float32))
        else:
            refused(path, "precise rows of 'table.word' are malformed")
    short = dict(arrays, **{"param.table.word.f16": f16[:-1]})
    refused(rewrite(tmp_path, short, meta), "precise rows of 'table.word' are malformed")
    no_f16 = {k: v for k, v in arrays.items() if k != "param.table.word.f16"}
    refused(rewrite(tmp_path, no_f16, meta), "precise rows of 'table.word' are malformed")


def test_malformed_quantized_tables_are_refused(quantized, tmp_path):
    _, arrays, meta = quantized
    q8, scale = arrays["param.table.word.q8"], arrays["param.table.word.scale"]
    cases = {
        "dtype": {"param.table.word.q8": q8.astype(np.int16)},
        "scale shape": {"param.table.word.scale": scale[:-1]},
        "1-d": {"param.table.word.q8": q8.ravel()},
    }
    for name, change in cases.items():
        refused(rewrite(tmp_path, dict(arrays, **change), meta, f"{name}.npz"),
                "quantized parameter 'table.word' is malformed")
    no_scale = {k: v for k, v in arrays.items() if k != "param.table.word.scale"}
    refused(rewrite(tmp_path, no_scale, meta), "quantized parameter 'table.word' is malformed")
    tall = dict(arrays, **{"param.table.word.q8": np.vstack([q8, q8[:1]]),
                           "param.table.word.scale": np.append(scale, scale[:1])})
    refused(rewrite(tmp_path, tall, meta), "parameter 'table.word' has shape")
    nan_scale = scale.copy()
    nan_scale[12] = np.nan                  # not one of the precise rows, which overwrite it
    refused(rewrite(tmp_path, dict(arrays, **{"param.table.word.scale": nan_scale}), meta),
            "NaN or infinity")


def test_the_stored_dtypes_are_the_formats(quantized):
    _, arrays, _ = quantized
    assert arrays["param.table.word.q8"].dtype == np.int8
    assert arrays["param.table.word.scale"].dtype == np.float32
    assert arrays["param.table.word.f16"].dtype == np.float16
    assert arrays["param.table.word.f16_rows"].dtype == np.int32
    assert arrays["param.W"].dtype == np.float32


def test_every_other_parameter_loads_exactly_beside_a_quantized_table(quantized, tmp_path):
    model, arrays, meta = quantized
    loaded = load_model(rewrite(tmp_path, arrays, meta, "ok.npz"))
    assert loaded.params.keys() == model.params.keys()
    for name, view in model.params.items():
        if name.startswith("table."):          # every table quantized: within its bound
            bound = np.abs(view).max(axis=1, keepdims=True) / 254 + 1e-7
            assert np.all(np.abs(loaded.params[name] - view) <= bound), name
        else:
            np.testing.assert_array_equal(loaded.params[name], view, err_msg=name)
    assert sum(name.endswith(".q8") for name in arrays) >= 2


def test_tables_are_quantized_from_exactly_quantize_rows(tmp_path, tiny_model_path,
                                                         monkeypatch):
    model = load_model(tiny_model_path)
    rows = model.params["table.word"].shape[0]
    for threshold, quantized in ((rows, True), (rows + 1, False)):
        monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", threshold)
        arrays = modelfile.model_arrays(model, quantize=True)
        assert ("param.table.word.q8" in arrays) == quantized, threshold
    monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", 1)
    assert "param.table.word" in modelfile.model_arrays(model)       # default: unquantized


def test_a_row_of_zeros_quantizes_to_zeros(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.setattr(modelfile, "QUANTIZE_ROWS", 1)
    model = load_model(tiny_model_path)
    model.params["table.word"][5] = 0.0
    path = tmp_path / "zeros.npz"
    save_model(model, path)
    arrays, _ = io.load_npz(path, io.MODEL_FORMAT)
    assert np.isfinite(arrays["param.table.word.scale"]).all()
    assert not arrays["param.table.word.q8"][5].any()
    np.testing.assert_array_equal(load_model(path).params["table.word"][5], 0.0)


def test_precise_row_zero_is_a_valid_row(quantized, tmp_path):
    _, arrays, meta = quantized
    rows = arrays["param.table.word.f16_rows"].copy()
    rows[0] = 0
    loaded = load_model(rewrite(tmp_path, dict(arrays, **{"param.table.word.f16_rows": rows}),
                                meta))
    np.testing.assert_array_equal(loaded.params["table.word"][0],
                                  arrays["param.table.word.f16"][0].astype(np.float32))


def test_model_files_are_stored_not_deflated(tmp_path, tiny_model_path):
    import zipfile
    path = tmp_path / "m.npz"
    save_model(load_model(tiny_model_path), path)
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}


def test_the_configuration_round_trips_dropout_included(tmp_path, stored):
    arrays, meta = stored
    config = dict(meta["config"], dropout=0.3)
    model = modelfile.model_from_arrays(arrays, dict(meta, config=config))
    assert model.config()["dropout"] == 0.3
    without = {k: v for k, v in config.items() if k != "dropout"}
    assert modelfile.model_from_arrays(arrays, dict(meta, config=without)).config()[
        "dropout"] == 0.0


def test_a_file_without_a_card_has_empty_metadata(tmp_path, stored):
    arrays, meta = stored
    path = rewrite(tmp_path, arrays, {k: v for k, v in meta.items() if k != "metadata"})
    assert load_model(path).metadata == {}


def test_arrays_from_memory_are_named_in_errors(stored):
    arrays, meta = stored
    with pytest.raises(io.ModelFileError, match="^<model>: parameter 'U' is missing"):
        modelfile.model_from_arrays({k: v for k, v in arrays.items() if k != "param.U"}, meta)
