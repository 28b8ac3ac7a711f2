import io
import json
import os

import pytest

from fastner.cli import main


def run(args, capsys, monkeypatch, stdin=""):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode()), "utf-8"))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_train_evaluate_tag(tmp_path, capsys, monkeypatch, tiny_train_path, tiny_dev_path):
    out = str(tmp_path / "cli.npz")
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_dev_path, "--out", out,
                        "--epochs", "3", "--hidden", "32", "--glove-words", "0", "--word-dim",
                        "16", "--quiet", "--test", tiny_dev_path], capsys, monkeypatch)
    assert code == 0, err
    assert "dev F1" in err and os.path.exists(out)
    with open(out[:-4] + ".json", encoding="utf-8") as f:
        card = json.load(f)
    assert card["command"].startswith("fastner train --train")
    assert set(card["data"]) == {"tiny_train.txt", "tiny_dev.txt"}

    code, text, _ = run(["evaluate", "--model", out, "--data", tiny_dev_path, "--json"],
                        capsys, monkeypatch)
    scores = json.loads(text)
    assert code == 0 and {"precision", "recall", "f1", "per_type"} <= set(scores)
    assert scores["f1"] == pytest.approx(card["dev"]["f1"])

    code, table, _ = run(["evaluate", "--model", out, "--data", tiny_dev_path], capsys, monkeypatch)
    assert "overall" in table and "PER" in table

    code, text, _ = run(["evaluate", "--model", out, "--data", tiny_dev_path, "--json",
                         "--case", "lower"], capsys, monkeypatch)
    assert code == 0 and json.loads(text)["f1"] < scores["f1"]     # capitals carry signal


def test_tag_text_lines(tiny_model_path, capsys, monkeypatch):
    lines = "Maria Lopez visited Lisbon on Monday .\n\nShares of Vertex Media fell .\r\n"
    code, out, _ = run(["tag", "--model", tiny_model_path], capsys, monkeypatch, lines)
    results = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(results) == 3
    assert results[1] == {"entities": []}
    source = lines.split("\n")
    for text, result in zip(source, results):
        for ent in result["entities"]:
            assert text[ent["start"]:ent["end"]] == ent["text"]
            assert 0.0 <= ent["score"] <= 1.0
    assert any(e["label"] == "PER" for e in results[0]["entities"])


def test_tag_conll_format(tiny_model_path, capsys, monkeypatch):
    code, out, _ = run(["tag", "--model", tiny_model_path, "--format", "conll"], capsys,
                       monkeypatch, "Maria\nLopez\nwept\n\nHi\n")
    rows = out.split("\n\n")
    assert code == 0
    assert [r.split()[0] for r in rows[0].splitlines()] == ["Maria", "Lopez", "wept"]
    assert rows[1].split()[0] == "Hi"


def test_missing_model_is_a_clear_error(tmp_path, capsys, monkeypatch):
    code, _, err = run(["tag", "--model", str(tmp_path / "nope.npz")], capsys, monkeypatch, "x\n")
    assert code == 1 and "no such model file" in err


def test_bad_training_flags(tmp_path, capsys, monkeypatch, tiny_train_path):
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path, "--out",
                        str(tmp_path / "x.npz"), "--optimizer", "lbfgs"], capsys, monkeypatch)
    assert code == 2 and "optimizer must be one of" in err
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path, "--out",
                        str(tmp_path / "x.bin")], capsys, monkeypatch)
    assert code == 2 and "--out must end in .npz" in err


def test_malformed_data_is_a_clear_error(tmp_path, capsys, monkeypatch, tiny_model_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    code, _, err = run(["evaluate", "--model", tiny_model_path, "--data", str(bad)], capsys,
                       monkeypatch)
    assert code == 1 and "bad.txt:2: expected 2 columns" in err


@pytest.mark.parametrize("content,message", [
    (b"", "no sentences to score"),
    (b"-DOCSTART- -X- -X- O\n\n", "no sentences to score"),
    (b"The O\ncat O\n", "no gold entities to score"),
    (b"\x90\x00\x01", "not UTF-8 text"),
])
def test_evaluate_refuses_what_it_cannot_score(tmp_path, capsys, monkeypatch, tiny_model_path,
                                               content, message):
    data = tmp_path / "data.txt"
    data.write_bytes(content)
    code, out, err = run(["evaluate", "--model", tiny_model_path, "--data", str(data)], capsys,
                         monkeypatch)
    assert code == 1 and message in err and str(data) in err and out == ""


def test_usage_errors_exit_2(tmp_path, capsys, monkeypatch, tiny_train_path):
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path, "--out",
                        str(tmp_path / "x.model")], capsys, monkeypatch)
    assert code == 2 and "--out must end in .npz" in err
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate"])                      # argparse: a required option is missing
    assert exit_.value.code == 2
