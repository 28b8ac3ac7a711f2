"""The command users run: `fastner tag` on 20 copies of CoNLL-2003 test (from
../shared when present, else 400 copies of the test fixture), as a new process
each round: interpreter start, imports, model load and cache build included,
single core (one BLAS thread, the default). "conll" tags the token-per-line
file; "text" tags the same sentences as one raw text per line."""
import os
import subprocess
import sys

import pytest

from fastner.conll import read_conll
from fastner.tagger import default_model_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = os.path.join(ROOT, "..", "shared", "data", "conll2003", "test.txt")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny_dev.txt")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    source, copies = (TEST, 20) if os.path.exists(TEST) else (FIXTURE, 400)
    sentences = read_conll(source)
    with open(source, encoding="utf-8") as f:
        conll = f.read()
    text = "".join(" ".join(s.tokens) + "\n" for s in sentences)
    tmp = tmp_path_factory.mktemp("cli")
    paths = {"conll": tmp / "in.conll", "text": tmp / "in.txt"}
    paths["conll"].write_text(conll * copies, encoding="utf-8")
    paths["text"].write_text(text * copies, encoding="utf-8")
    return paths, copies * sum(len(s.tokens) for s in sentences), tmp


@pytest.mark.parametrize("impl", ["conll", "text"])
def test_fastner_tag(benchmark, inputs, impl):
    paths, tokens, tmp = inputs
    argv = [sys.executable, "-m", "fastner.cli", "tag", "--quiet", "--model",
            default_model_path(), "--format", impl, str(paths[impl]), "-o", str(tmp / "out")]
    benchmark.group = "fastner tag (process)"
    benchmark.extra_info["tokens"] = tokens
    benchmark.pedantic(subprocess.run, args=(argv,), kwargs={"check": True}, rounds=3,
                       iterations=1)
    assert (tmp / "out").stat().st_size > paths[impl].stat().st_size / 2
