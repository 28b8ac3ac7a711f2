"""Models by name: "fast" is the shipped model; "accurate" is the package fastner-accurate
(import name fastner_accurate), found by fastner.load, the CLI's --model and
FASTNER_MODEL alike, with an error that says how to install it when it is absent."""
import json
import os
import sys

import pytest

import fastner
from fastner.cli import main
from fastner.io import ModelFileError
from fastner.tagger import model_path, shipped_model_path


@pytest.fixture
def accurate_package(tmp_path, monkeypatch, tiny_model_path):
    """A stand-in fastner_accurate package whose model is the tiny test model."""
    package = tmp_path / "site" / "fastner_accurate"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f"def model_path():\n    return {tiny_model_path!r}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "fastner_accurate", raising=False)
    return tiny_model_path


@pytest.fixture
def no_accurate_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastner_accurate", None)     # import fails


def test_names_and_paths(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTNER_MODEL", "x")
    monkeypatch.delenv("FASTNER_MODEL")
    assert model_path("fast") == model_path(None) == shipped_model_path()
    assert model_path(str(tmp_path / "m.npz")) == str(tmp_path / "m.npz")
    assert model_path(tmp_path / "m.npz") == str(tmp_path / "m.npz")
    monkeypatch.setenv("FASTNER_MODEL", "fast")
    assert model_path(None) == shipped_model_path()
    monkeypatch.setenv("FASTNER_MODEL", str(tmp_path / "m.npz"))
    assert model_path(None) == str(tmp_path / "m.npz") and model_path("fast") != model_path()


def test_the_accurate_model_loads_by_name_everywhere(accurate_package, monkeypatch, capsys):
    monkeypatch.delenv("FASTNER_MODEL", raising=False)
    assert model_path("accurate") == accurate_package
    tagger = fastner.load("accurate")
    assert tagger.name == os.path.basename(accurate_package)[:-4]
    monkeypatch.setattr("sys.stdin", __import__("io").TextIOWrapper(
        __import__("io").BytesIO(b"Maria Lopez visited Lisbon .\n"), "utf-8"))
    assert main(["tag", "--quiet", "--model", "accurate"]) == 0
    by_flag = capsys.readouterr().out
    assert json.loads(by_flag)["entities"] == tagger("Maria Lopez visited Lisbon .").to_dict()[
        "entities"]
    monkeypatch.setenv("FASTNER_MODEL", "accurate")
    assert model_path() == accurate_package
    assert fastner.load().name == tagger.name


def test_a_missing_model_package_says_how_to_install_it(no_accurate_package, monkeypatch,
                                                        capsys):
    monkeypatch.delenv("FASTNER_MODEL", raising=False)
    with pytest.raises(ModelFileError, match="model 'accurate' is not installed: it is the "
                                             "package fastner-accurate"):
        fastner.load("accurate")
    assert main(["evaluate", "--model", "accurate", "--data", "x.txt"]) == 1
    assert "pip install fastner-accurate" in capsys.readouterr().err
