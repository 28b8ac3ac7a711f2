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


def test_train_reads_the_corpora_with_the_collector_paused_then_freezes_them(
        tmp_path, capsys, monkeypatch, tiny_train_path, tiny_dev_path):
    # fastner train reads the corpora with the cyclic collector paused, then freezes
    # them (fastner.gcpause.kept_to_the_end): training starts with them frozen and the
    # collector on; the trainer's run unfreezes everything when it ends
    import gc

    import fastner.conll as conll
    import fastner.train as train_module
    seen = {}
    real_parse, real_run = conll.parse_conll, train_module.Trainer.run
    monkeypatch.setattr(conll, "parse_conll", lambda *a, **k: (
        seen.setdefault("reading", (gc.isenabled(), gc.get_freeze_count())),
        real_parse(*a, **k))[1])
    monkeypatch.setattr(train_module.Trainer, "run", lambda *a, **k: (
        seen.setdefault("run", (gc.isenabled(), gc.get_freeze_count() > 0)),
        real_run(*a, **k))[1])
    assert gc.isenabled() and gc.get_freeze_count() == 0
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_dev_path,
                        "--out", str(tmp_path / "m.npz"), "--epochs", "1", "--hidden", "8",
                        "--glove-words", "0", "--word-dim", "8", "--quiet"], capsys, monkeypatch)
    assert code == 0, err
    assert seen == {"reading": (False, 0), "run": (True, True)}
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_bad_training_flags(tmp_path, capsys, monkeypatch, tiny_train_path):
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path, "--out",
                        str(tmp_path / "x.npz"), "--optimizer", "lbfgs"], capsys, monkeypatch)
    assert code == 2 and "optimizer must be one of" in err
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path, "--out",
                        str(tmp_path / "x.bin")], capsys, monkeypatch)
    assert code == 2 and "--out must end in .npz" in err


@pytest.mark.parametrize("dev", [b"", b"-DOCSTART- -X- -X- O\n\n"])
def test_train_refuses_an_empty_corpus_before_training(tmp_path, capsys, monkeypatch,
                                                        tiny_train_path, dev):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(dev)
    out = tmp_path / "x.npz"
    for flags, named in ((["--train", tiny_train_path, "--dev", str(empty)], "--dev"),
                         (["--train", str(empty), "--dev", tiny_train_path], "--train")):
        code, _, err = run(["train", *flags, "--out", str(out), "--quiet"], capsys, monkeypatch)
        assert code == 1 and f"{named} {empty} has no sentences" in err
        assert not out.exists()


def test_train_refuses_an_out_it_cannot_write_before_training(tmp_path, capsys, monkeypatch,
                                                             tiny_train_path):
    folder = tmp_path / "models.npz"
    folder.mkdir()
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path, "--out",
                        str(folder)], capsys, monkeypatch)
    assert code == 2 and f"--out {folder} is a directory" in err
    copy = tmp_path / "train.npz"
    with open(tiny_train_path, "rb") as f:
        copy.write_bytes(f.read())
    code, _, err = run(["train", "--train", str(copy), "--dev", tiny_train_path, "--out",
                        str(copy)], capsys, monkeypatch)
    assert code == 2 and "is also an input" in err
    with open(tiny_train_path, "rb") as f:
        assert copy.read_bytes() == f.read()


def test_train_reads_several_files_as_one_corpus(tmp_path, tiny_train_path, tiny_dev_path):
    from fastner.cli import _read_corpora
    from fastner.conll import read_conll
    one, two = read_conll(tiny_train_path), read_conll(tiny_dev_path)
    both = _read_corpora([tiny_train_path, tiny_dev_path])
    assert [s.tokens for s in both] == [s.tokens for s in one + two]
    assert [s.doc for s in both[:len(one)]] == [s.doc for s in one]
    assert [s.doc for s in both[len(one):]] == [s.doc + one[-1].doc + 1 for s in two]


def test_train_refuses_a_learning_rate_that_is_not_a_number(tmp_path, capsys, monkeypatch,
                                                             tiny_train_path):
    code, _, err = run(["train", "--train", tiny_train_path, "--dev", tiny_train_path,
                        "--out", str(tmp_path / "x.npz"), "--lr", "nan"], capsys, monkeypatch)
    assert code == 2 and "lr must be a finite number; got nan" in err


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


def test_version_and_train_help_show_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("fastner 0.")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "learning rate (default: 0.001)" in text and "(default: caps:5)" in text


CONLL = ("-DOCSTART- -X- -X- O\n\nMaria NNP B-NP B-PER\nLopez NNP I-NP I-PER\n"
         "visited VBD B-VP O\nLisbon NNP B-NP B-LOC\n. . O O\n\n"
         "-DOCSTART- -X- -X- O\n\nHi UH B-INTJ O\n")


def test_tag_conll_keeps_every_line_and_column(tiny_model_path, tmp_path, capsys, monkeypatch):
    """Each line back unchanged plus a last column; -DOCSTART- and blank lines kept;
    files as arguments, -o for the output; the same as stdin."""
    src = tmp_path / "in.txt"
    src.write_text(CONLL, encoding="utf-8")
    out = tmp_path / "out.txt"
    code, _, err = run(["tag", "--model", tiny_model_path, "--format", "conll", str(src), str(src),
                        "-o", str(out)], capsys, monkeypatch)
    assert code == 0, err
    lines = out.read_text(encoding="utf-8").splitlines()
    original = CONLL.splitlines() * 2
    assert len(lines) == len(original)
    for got, was in zip(lines, original):
        assert got == was if not was else got.rsplit(" ", 1)[0] == was
    assert {len(line.split()) for line in lines if line} == {5}
    assert lines[0] == "-DOCSTART- -X- -X- O O"
    code, piped, _ = run(["tag", "--model", tiny_model_path, "--format", "conll"], capsys,
                         monkeypatch, CONLL)
    assert piped.splitlines() == lines[:len(CONLL.splitlines())]


def test_tag_conll_scores_with_conlleval_as_evaluate_does(tiny_model_path, tiny_dev_path,
                                                          tmp_path, capsys, monkeypatch):
    conlleval = pytest.importorskip("conlleval")
    out = tmp_path / "tagged.txt"
    assert run(["tag", "--model", tiny_model_path, "--format", "conll", tiny_dev_path, "-o",
                str(out)], capsys, monkeypatch)[0] == 0
    ours = json.loads(run(["evaluate", "--model", tiny_model_path, "--data", tiny_dev_path,
                           "--json", "--output", str(tmp_path / "eval.txt")], capsys,
                          monkeypatch)[1])
    for path in (out, tmp_path / "eval.txt"):
        with open(path, encoding="utf-8") as f:
            theirs = conlleval.evaluate(line.rstrip("\n") for line in f)
        assert 100 * theirs["overall"]["chunks"]["evals"]["f1"] == pytest.approx(ours["f1"])


def test_closed_pipe_ends_quietly(tiny_model_path):
    import subprocess
    import sys
    text = "Maria Lopez visited Lisbon .\n" * 20000
    proc = subprocess.run(f"{sys.executable} -m fastner.cli tag --model {tiny_model_path} | head -1",
                          shell=True, input=text, capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 1 and proc.stderr == "", proc.stderr


@pytest.mark.slow
def test_conll_tagging_memory_does_not_grow_with_the_input(tiny_model_path, tiny_dev_path,
                                                           tmp_path):
    """Peak memory of `fastner tag --format conll` on 1 and 20 copies of a 0.5 MB file."""
    import subprocess
    import sys
    with open(tiny_dev_path, encoding="utf-8") as f:
        one = f.read()
    small, large = tmp_path / "one.txt", tmp_path / "twenty.txt"
    small.write_text(one * 60, encoding="utf-8")
    large.write_text(one * 60 * 20, encoding="utf-8")
    code = ("import resource, sys; from fastner.cli import main; rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)")
    peaks = []
    for path in (small, large):
        done = subprocess.run([sys.executable, "-c", code, "tag", "--model", tiny_model_path,
                               "--format", "conll", str(path), "-o", str(path) + ".out"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        peaks.append(int(done.stderr.split()[-1]))
    assert large.stat().st_size > 10_000_000
    assert peaks[1] <= 1.1 * peaks[0], peaks


def test_version_names_the_package_and_the_default_model(capsys, monkeypatch, tiny_model_path,
                                                         tmp_path):
    import fastner
    monkeypatch.setenv("FASTNER_MODEL", tiny_model_path)
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"fastner {fastner.__version__}",
                   f"model tiny {fastner.__version__} ({tiny_model_path})"]
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    monkeypatch.setenv("FASTNER_MODEL", str(broken))
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.splitlines()[1].startswith(f"model: none loadable ({broken}:")


@pytest.mark.parametrize("raised,code,message", [
    (KeyboardInterrupt(), 130, "fastner: error: interrupted"),
    (ValueError("bad value"), 1, "fastner: error: bad value"),
    (OSError(28, "No space left on device"), 1, "fastner: error: [Errno 28] No space left"),
    (RuntimeError("stuck"), 1, "fastner: error: stuck"),
])
def test_documented_exit_codes(capsys, monkeypatch, tiny_model_path, raised, code, message):
    """1 for errors (one short line naming the problem), 130 for Ctrl-C, and no
    traceback either way."""
    from fastner import cli

    def fails(args):
        raise raised
    monkeypatch.setattr(cli, "cmd_tag", fails)
    got, out, err = run(["tag", "--model", tiny_model_path], capsys, monkeypatch)
    assert got == code
    assert err.startswith(message) and err.count("\n") == 1 and "Traceback" not in err
    assert out == ""


def test_an_unexpected_exception_is_not_swallowed(monkeypatch, tiny_model_path):
    from fastner import cli
    monkeypatch.setattr(cli, "cmd_tag", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main(["tag", "--model", tiny_model_path])


@pytest.fixture(scope="module")
def doccase_model_path(tmp_path_factory):
    """A tiny model with a document-level feature: its tags depend on which sentences
    share a document, so a command that numbers documents wrongly tags differently."""
    from fastner.conll import read_conll
    from fastner.train import TrainConfig, Trainer
    out = str(tmp_path_factory.mktemp("doccase") / "doccase.npz")
    cfg = TrainConfig(epochs=2, hidden=16, glove_words=0, word_dim=16, seed=2,
                      features="caps:4,doccase:4")
    trainer = Trainer(cfg, out, quiet=True, log=lambda msg: None)
    fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
    model, state = trainer.run(read_conll(os.path.join(fixtures, "tiny_train.txt")),
                               read_conll(os.path.join(fixtures, "tiny_dev.txt")))
    trainer.finish(model, state)
    return out


def direct_tags(model_path, data_path):
    from fastner.conll import read_conll
    from fastner.tagger import Tagger
    sentences = read_conll(data_path)
    return sentences, Tagger.load(model_path).tags([s.tokens for s in sentences],
                                                   [s.doc for s in sentences])


def test_document_features_see_the_documents_the_file_has(doccase_model_path, tiny_dev_path):
    from fastner.conll import read_conll
    from fastner.tagger import Tagger
    sentences = read_conll(tiny_dev_path)
    assert len({s.doc for s in sentences}) > 3
    tagger = Tagger.load(doccase_model_path)
    tokens = [s.tokens for s in sentences]
    # the premise of the tests below: one document for all gives other tags
    assert tagger.tags(tokens, [s.doc for s in sentences]) != tagger.tags(tokens,
                                                                          [0] * len(tokens))


@pytest.mark.parametrize("block_bytes", [1 << 20, 200])
def test_tag_conll_tags_by_document_across_blocks(doccase_model_path, tiny_dev_path, capsys,
                                                  monkeypatch, block_bytes):
    from fastner import conll
    monkeypatch.setattr(conll, "BLOCK_BYTES", block_bytes)
    sentences, expected = direct_tags(doccase_model_path, tiny_dev_path)
    code, out, err = run(["tag", "--quiet", "--model", doccase_model_path, "--format", "conll",
                          tiny_dev_path], capsys, monkeypatch)
    assert code == 0, err
    token_lines = [line for line in out.splitlines()
                   if line and not line.startswith("-DOCSTART-")]
    assert [line.rsplit(" ", 1)[1] for line in token_lines] == [t for s in expected for t in s]
    with open(tiny_dev_path, encoding="utf-8") as f:
        assert len(out.splitlines()) == len(f.read().splitlines())


@pytest.mark.parametrize("batch", [2000, 3, 1])
def test_evaluate_scores_whole_documents_in_every_batch(doccase_model_path, tiny_dev_path,
                                                        capsys, monkeypatch, batch, tmp_path):
    from fastner import cli
    from fastner.evaluate import entity_scores
    monkeypatch.setattr(cli, "EVALUATE_BATCH_SENTENCES", batch)
    sentences, expected = direct_tags(doccase_model_path, tiny_dev_path)
    out_path = tmp_path / "tagged.txt"
    code, out, err = run(["evaluate", "--model", doccase_model_path, "--data", tiny_dev_path,
                          "--json", "--output", str(out_path)], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(out) == entity_scores([s.tags for s in sentences], expected)
    written = [line.split()[-1] for line in out_path.read_text().splitlines()
               if line and not line.startswith("-DOCSTART-")]
    assert written == [t for s in expected for t in s]


def test_whole_documents_cut_only_between_documents():
    from fastner.cli import _whole_documents
    from fastner.conll import Sentence
    docs = [0, 0, 0, 1, 1, 2, 3, 3, 3, 3]
    sents = [Sentence([str(i)], None, d) for i, d in enumerate(docs)]
    batches = [[s.doc for s in b] for b in _whole_documents(sents, 2)]
    assert batches == [[0, 0, 0], [1, 1], [2, 3, 3, 3, 3]]
    assert [[s.doc for s in b] for b in _whole_documents(sents, 3)] == [[0, 0, 0],
                                                                        [1, 1, 2],
                                                                        [3, 3, 3, 3]]
    assert [len(b) for b in _whole_documents(sents, 1)] == [3, 2, 1, 4]
    assert list(_whole_documents([], 5)) == []


@pytest.mark.parametrize("quiet", [False, True])
def test_tag_shows_progress_on_a_terminal_unless_quiet(tiny_model_path, tiny_dev_path,
                                                       monkeypatch, capsys, quiet):
    from conftest import FakeTerminal
    terminal = FakeTerminal()
    monkeypatch.setattr("sys.stderr", terminal)
    args = ["tag", "--model", tiny_model_path, "--format", "conll", tiny_dev_path]
    code = main(args + (["--quiet"] if quiet else []))
    out = capsys.readouterr().out
    assert code == 0
    assert ("tiny_dev.txt" in terminal.getvalue()) != quiet     # the bar names the file
    assert ("%" in terminal.getvalue()) != quiet                # and knows its size
    assert "tiny_dev.txt" not in out and out.startswith("-DOCSTART-")


def test_tag_include_tokens_adds_tokens(tiny_model_path, capsys, monkeypatch):
    code, out, _ = run(["tag", "--quiet", "--model", tiny_model_path, "--include-tokens"],
                       capsys, monkeypatch, "Maria Lopez visited Lisbon .\n")
    assert code == 0
    assert [t["text"] for t in json.loads(out)["tokens"]] == ["Maria", "Lopez", "visited",
                                                              "Lisbon", "."]
    code, out, _ = run(["tag", "--quiet", "--model", tiny_model_path], capsys, monkeypatch,
                       "Maria Lopez visited Lisbon .\n")
    assert "tokens" not in json.loads(out)


def test_tag_corpus_passes_every_option_and_prints_the_totals(monkeypatch, capsys, tmp_path):
    from fastner import corpus
    calls = []

    def fake_tag_corpus(input_glob, output_dir, model_path, **kwargs):
        calls.append((input_glob, output_dir, model_path, kwargs))
        kwargs["log"]("planned")
        return {"documents": 3, "tagged": 3}
    monkeypatch.setattr(corpus, "tag_corpus", fake_tag_corpus)
    code, out, err = run(["tag-corpus", "--input", "in/*.txt", "--output", "out",
                          "--model", "m.npz", "--format", "jsonl", "--scheduler", "tcp://s:1",
                          "--workers", "3", "--partition-size", "50", "--text-field", "body",
                          "--id-field", "key", "--max-chars", "99"], capsys, monkeypatch)
    assert code == 0 and json.loads(out) == {"documents": 3, "tagged": 3}
    assert err == "planned\n"
    [(input_glob, output_dir, model_path, kwargs)] = calls
    kwargs.pop("log")
    assert (input_glob, output_dir, model_path) == ("in/*.txt", "out", "m.npz")
    assert kwargs == {"fmt": "jsonl", "scheduler": "tcp://s:1", "workers": 3,
                      "partition_size": 50, "text_field": "body", "id_field": "key",
                      "max_chars": 99, "progress": True}
    calls.clear()
    code, out, err = run(["tag-corpus", "--input", "x", "--output", "o", "--quiet"], capsys,
                         monkeypatch)
    assert code == 0 and err == ""
    from fastner.tagger import default_model_path
    assert calls[0][2] == default_model_path() and calls[0][3]["progress"] is False


@pytest.mark.parametrize("card,shown", [
    ({"name": "news", "version": "2.1"}, "model news 2.1"),
    ({"name": "news", "fastner_version": "0.1.0"}, "model news 0.1.0"),
    ({}, "model plain unknown"),
])
def test_version_names_the_model_from_its_card_or_file(card, shown, tmp_path, monkeypatch,
                                                       tiny_model_path):
    from fastner import __version__, cli
    from fastner.modelfile import load_model, save_model
    path = tmp_path / "plain.npz"
    save_model(load_model(tiny_model_path), path, card)
    monkeypatch.setenv("FASTNER_MODEL", str(path))
    assert cli.version_text() == f"fastner {__version__}\n{shown} ({path})"


def test_version_says_when_no_model_loads(tmp_path, monkeypatch):
    from fastner import __version__, cli
    monkeypatch.setenv("FASTNER_MODEL", str(tmp_path / "gone.npz"))
    assert cli.version_text() == (f"fastner {__version__}\nmodel: none loadable "
                                  f"({tmp_path / 'gone.npz'}: no such model file)")


def test_serve_commands_set_the_services_settings_from_their_options(monkeypatch, tmp_path,
                                                                     capsys):
    from fastner.service import proxy
    for name in ("FASTNER_MODEL", "FASTNER_WORKERS", "FASTNER_BIND", "FASTNER_PUBLIC_BIND"):
        monkeypatch.setenv(name, "")          # so that teardown restores what was there,
        monkeypatch.delenv(name)              # even the variables the commands set
    execs, proxies = [], []
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append((path, argv)))
    monkeypatch.setattr(proxy, "serve_proxy", lambda log: proxies.append(log) or 0)
    assert main(["serve", "--model", "rel.npz", "--workers", "3",
                 "--bind", "127.0.0.1:9"]) is None
    assert os.environ["FASTNER_MODEL"] == os.path.abspath("rel.npz")
    assert (os.environ["FASTNER_WORKERS"], os.environ["FASTNER_BIND"]) == ("3", "127.0.0.1:9")
    [(path, argv)] = execs
    assert path == argv[0] and "gunicorn" in " ".join(argv)
    assert main(["serve-proxy", "--public-bind", "127.0.0.1:10"]) == 0
    assert os.environ["FASTNER_PUBLIC_BIND"] == "127.0.0.1:10" and len(proxies) == 1
    proxies[0]("nginx started")                   # the front's messages go to stderr
    assert capsys.readouterr() == ("", "nginx started\n")
    monkeypatch.delenv("FASTNER_BIND")
    main(["serve"])                                  # no options: the environment stays
    assert "FASTNER_BIND" not in os.environ


def _without_docstarts(path, tmp_path):
    out = tmp_path / "one_document.txt"
    with open(path, encoding="utf-8") as f:
        out.write_text("".join(line for line in f if not line.startswith("-DOCSTART-")),
                       encoding="utf-8")
    return str(out)


@pytest.mark.parametrize("documents,four_columns", [(True, False), (True, True),
                                                    (False, False)])
def test_tag_conll_holds_one_document_at_a_time(doccase_model_path, tiny_dev_path,
                                                tiny_train_path, tmp_path, capsys, monkeypatch,
                                                documents, four_columns):
    """Small blocks: the tags are those of whole-file tagging, each call tags at most a
    block and the document it finishes, and a file without -DOCSTART- is one document."""
    from fastner import cli, conll
    source = tiny_train_path if four_columns else tiny_dev_path   # "-DOCSTART- -X- -X- O"
    path = source if documents else _without_docstarts(source, tmp_path)
    sentences, expected = direct_tags(doccase_model_path, path)
    monkeypatch.setattr(conll, "BLOCK_BYTES", 300)
    sizes = []
    real = cli._tag_conll_lines

    def counting(tagger, lines, doc, write):
        sizes.append(len(lines))
        return real(tagger, lines, doc, write)
    monkeypatch.setattr(cli, "_tag_conll_lines", counting)
    code, out, err = run(["tag", "--quiet", "--model", doccase_model_path, "--format", "conll",
                          path], capsys, monkeypatch)
    assert code == 0, err
    tags = [line.rsplit(" ", 1)[1] for line in out.splitlines()
            if line and not line.startswith("-DOCSTART-")]
    assert tags == [t for s in expected for t in s]
    with open(path, encoding="utf-8") as f:
        n_lines = len(f.read().splitlines())
    assert len(out.splitlines()) == n_lines and sum(sizes) == n_lines
    if documents:
        longest_doc = max(sum(len(s.tokens) + 1 for s in sentences if s.doc == d)
                          for d in {s.doc for s in sentences})
        assert len(sizes) > 3 and max(sizes) <= longest_doc + 2 + 300 // 4
    else:
        assert sizes == [n_lines]


def test_tag_conll_cuts_blocks_between_sentences(tiny_model_path, tiny_dev_path, capsys,
                                                 monkeypatch):
    from fastner import conll
    code, whole, _ = run(["tag", "--quiet", "--model", tiny_model_path, "--format", "conll",
                          tiny_dev_path], capsys, monkeypatch)
    monkeypatch.setattr(conll, "BLOCK_BYTES", 100)
    code, blocked, _ = run(["tag", "--quiet", "--model", tiny_model_path, "--format", "conll",
                            tiny_dev_path], capsys, monkeypatch)
    assert code == 0 and blocked == whole


def test_tag_conll_takes_the_token_from_the_first_column(tiny_model_path, tmp_path, capsys,
                                                        monkeypatch):
    four = tmp_path / "four.txt"
    two = tmp_path / "two.txt"
    four.write_text("Maria NNP B-NP B-PER\nLopez NNP I-NP I-PER\nvisited VBD B-VP O\n"
                    "Lisbon NNP B-NP B-LOC\n", encoding="utf-8")
    two.write_text("Maria B-PER\nLopez I-PER\nvisited O\nLisbon B-LOC\n", encoding="utf-8")
    tags = []
    for path in (four, two):
        code, out, _ = run(["tag", "--quiet", "--model", tiny_model_path, "--format", "conll",
                            str(path)], capsys, monkeypatch)
        tags.append([line.split()[-1] for line in out.splitlines()])
    assert tags[0] == tags[1]


def test_tag_errors_name_the_file(tiny_model_path, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\n\xff\xfe broken\n")
    code, _, err = run(["tag", "--quiet", "--model", tiny_model_path, str(bad)], capsys,
                       monkeypatch)
    assert code == 1 and f"{bad}:2: not UTF-8 text" in err


def test_tag_output_files_are_utf8_under_any_locale(tiny_model_path, tmp_path, capsys,
                                                    monkeypatch):
    import subprocess
    import sys
    src = tmp_path / "in.txt"
    src.write_text("Günther Öztürk besuchte München .\n", encoding="utf-8")
    here = tmp_path / "here.jsonl"
    code, _, _ = run(["tag", "--quiet", "--include-tokens", "--model", tiny_model_path,
                      str(src), "-o", str(here)], capsys, monkeypatch)
    assert code == 0
    there = tmp_path / "there.jsonl"
    env = dict(os.environ, LC_ALL="POSIX", LANG="POSIX", PYTHONUTF8="0",
               PYTHONCOERCECLOCALE="0")
    done = subprocess.run([sys.executable, "-m", "fastner.cli", "tag", "--quiet",
                           "--include-tokens", "--model", tiny_model_path, str(src), "-o",
                           str(there)], env=env,
                          capture_output=True, cwd=os.path.dirname(os.path.dirname(
                              os.path.abspath(__file__))), timeout=120)
    assert done.returncode == 0, done.stderr
    assert there.read_bytes() == here.read_bytes()
    assert "München" in there.read_bytes().decode("utf-8")


def test_version_reads_a_card_less_file(tmp_path, monkeypatch, tiny_model_path):
    from fastner import __version__, cli, io
    arrays, meta = io.load_npz(tiny_model_path, io.MODEL_FORMAT)
    path = tmp_path / "bare.npz"
    io.save_npz(path, io.MODEL_FORMAT, arrays, {k: v for k, v in meta.items()
                                                if k != "metadata"})
    monkeypatch.setenv("FASTNER_MODEL", str(path))
    assert cli.version_text() == f"fastner {__version__}\nmodel bare unknown ({path})"


@pytest.mark.parametrize("fmt", ["text", "conll"])
def test_tag_refuses_to_write_over_its_input(tiny_model_path, tmp_path, capsys, monkeypatch,
                                             fmt):
    src = tmp_path / "news.txt"
    src.write_bytes(b"Maria Lopez visited Lisbon .\n")
    link = tmp_path / "link.txt"
    link.symlink_to(src)
    for output in (src, link, tmp_path / "." / "news.txt"):
        code, out, err = run(["tag", "--quiet", "--format", fmt, "--model", tiny_model_path,
                              str(src), "-o", str(output)], capsys, monkeypatch)
        assert code == 2 and out == ""
        assert f"--output {output} is also an input" in err
        assert src.read_bytes() == b"Maria Lopez visited Lisbon .\n"
    code, _, err = run(["tag", "--quiet", "--model", tiny_model_path, str(src), "-o",
                        str(tmp_path / "other.jsonl")], capsys, monkeypatch)
    assert code == 0, err


def test_tag_output_appears_whole_or_not_at_all(tiny_model_path, tmp_path, capsys, monkeypatch):
    from fastner.tagger import Tagger
    src = tmp_path / "in.txt"
    src.write_bytes(b"Maria Lopez visited Lisbon .\n" * 3000)
    dest = tmp_path / "tags.jsonl"
    dest.write_bytes(b"the previous run's tags\n")

    pipe = Tagger.pipe

    def interrupted(self, texts, batch_size=256, include_tokens=False):
        yield from pipe(self, list(texts)[:10], batch_size, include_tokens)
        raise KeyboardInterrupt
    monkeypatch.setattr(Tagger, "pipe", interrupted)
    code, _, err = run(["tag", "--quiet", "--model", tiny_model_path, str(src), "-o",
                        str(dest)], capsys, monkeypatch)
    assert code == 130 and "interrupted" in err
    assert dest.read_bytes() == b"the previous run's tags\n"
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "tags.jsonl"]      # no temporary left
    monkeypatch.undo()
    code, _, _ = run(["tag", "--quiet", "--model", tiny_model_path, str(src), "-o", str(dest)],
                     capsys, monkeypatch)
    assert code == 0 and len(dest.read_bytes().splitlines()) == 3000


def test_evaluate_refuses_to_write_over_its_data(tiny_model_path, tiny_dev_path, tmp_path,
                                                capsys, monkeypatch):
    data = tmp_path / "dev.txt"
    with open(tiny_dev_path, "rb") as f:
        data.write_bytes(f.read())
    before = data.read_bytes()
    code, _, err = run(["evaluate", "--model", tiny_model_path, "--data", str(data),
                        "--output", str(data)], capsys, monkeypatch)
    assert code == 2 and f"--output {data} is also --data" in err
    assert data.read_bytes() == before
