import io

import pytest

from fastner.conll import ConllFormatError, parse_conll, read_conll, write_conll
from fastner.tags import TagSet, spans, to_iob2


def test_reads_four_and_two_column_files(tiny_train_path, tiny_dev_path):
    train = read_conll(tiny_train_path)
    dev = read_conll(tiny_dev_path)
    assert len(train) == 400 and len(dev) == 100
    assert train[0].extra[0] == ("NN", "O") and dev[0].extra[0] == ()
    assert train[-1].doc == 39 and train[0].doc == 0


def test_docstart_blank_lines_and_iob1_normalised():
    text = ("-DOCSTART- -X- -X- O\n\n"
            "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n\n"
            "EU NNP I-NP I-ORG\nand CC O O\nNATO NNP I-NP I-ORG\nUN NNP I-NP B-ORG\n\n"
            "-DOCSTART- -X- -X- O\n\nhi UH O O\n")
    sents = parse_conll(io.BytesIO(text.encode()))
    assert [s.tags for s in sents] == [["B-PER", "I-PER"], ["B-ORG", "O", "B-ORG", "B-ORG"], ["O"]]
    assert [s.doc for s in sents] == [0, 0, 1]


@pytest.mark.parametrize("text,message", [
    ("EU B-ORG\nrejects\n", "<input>:2: expected 2 columns"),
    ("EU\n", "<input>:1: expected at least 2 columns"),
    ("EU NNP B-ORG\nrejects VBZ X-FOO\n", "<input>:2: 'X-FOO' is not an IOB tag"),
])
def test_malformed_lines_name_the_line(text, message):
    with pytest.raises(ConllFormatError) as info:
        parse_conll(io.BytesIO(text.encode()))
    assert message in str(info.value)


def test_write_then_read_round_trip(tiny_train_path):
    sents = read_conll(tiny_train_path)
    buf = io.StringIO()
    write_conll(buf, sents)
    again = parse_conll(io.BytesIO(buf.getvalue().encode()))
    assert [(s.tokens, s.tags, s.extra, s.doc) for s in again] == \
           [(s.tokens, s.tags, s.extra, s.doc) for s in sents]


def test_untagged_input():
    sents = parse_conll(io.BytesIO(b"EU\nrejects\n\nHi\n"), tagged=False)
    assert [s.tokens for s in sents] == [["EU", "rejects"], ["Hi"]] and sents[0].tags is None


def test_spans_follow_conlleval():
    assert spans(["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG"]) == \
        [("PER", 0, 2), ("LOC", 3, 5), ("LOC", 5, 6), ("ORG", 6, 7)]
    assert to_iob2(["I-PER", "I-PER", "B-PER", "O", "I-ORG"]) == \
        ["B-PER", "I-PER", "B-PER", "O", "B-ORG"]


def test_tagset():
    tags = TagSet.from_sequences([["B-ZOO", "O", "B-PER", "I-LOC"]])
    assert tags.names == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ZOO", "I-ZOO"]
    with pytest.raises(ValueError, match="not in the tag set"):
        tags.encode(["B-MISC"])


def test_entity_runs_agree_with_spans_on_valid_iob2():
    import numpy as np
    tags = TagSet()
    rng = np.random.default_rng(0)
    for _ in range(200):
        seq = []                         # a random valid IOB2 sequence
        for _ in range(rng.integers(0, 30)):
            prev = seq[-1] if seq else "O"
            options = ["O"] + [f"B-{t}" for t in tags.entity_types]
            if prev != "O":
                options.append("I-" + prev[2:])
            seq.append(options[rng.integers(len(options))])
        ids = tags.encode(seq)
        conf = rng.random(len(seq)).astype(np.float32)
        starts, ends, kinds, lowest = tags.entity_runs(ids, conf)
        got = [(tags.entity_types[k], a, b) for a, b, k in zip(starts, ends, kinds)]
        assert got == spans(seq)
        for a, b, low in zip(starts, ends, lowest):
            assert low == conf[a:b].min()


def test_byte_order_mark_is_ignored():
    sents = parse_conll(io.BytesIO("\ufeff-DOCSTART- -X- O\n\nEU B-ORG\n".encode()))
    assert [s.tokens for s in sents] == [["EU"]]


@pytest.mark.parametrize("data,message", [
    (b"\x90\x01garbage\nEU B-ORG\n", r"bin.txt:1: not UTF-8 text \(byte 0 of the file"),
    (b"EU B-ORG\n\nrejects O\n\xff\n", r"bin.txt:4: not UTF-8 text \(byte 20 of the file"),
    (b"\0" * 3_000_000, r"bin.txt:1: line longer than 1,048,576 bytes"),
    (b"EU B-ORG\n" + b"x" * 500_000 + b" O O\n", r"bin.txt:2: expected 2 columns"),
])
def test_malformed_files_name_the_place_briefly(tmp_path, data, message):
    path = tmp_path / "bin.txt"
    path.write_bytes(data)
    with pytest.raises(ConllFormatError, match=message) as err:
        read_conll(path)
    assert len(str(err.value)) < 300


def test_reading_pauses_the_collector_and_restores_it(tiny_train_path, tmp_path, monkeypatch):
    # read_conll parses with the cyclic collector off (fastner.gcpause) and leaves
    # it as it found it, also when the file is malformed
    import gc

    import fastner.conll as conll
    seen = []
    real_parse = conll.parse_conll
    monkeypatch.setattr(conll, "parse_conll",
                        lambda *a, **k: seen.append(gc.isenabled()) or real_parse(*a, **k))
    assert gc.isenabled()
    assert conll.read_conll(tiny_train_path)
    assert seen == [False] and gc.isenabled()
    bad = tmp_path / "bad.conll"
    bad.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP\n")
    with pytest.raises(ConllFormatError):
        conll.read_conll(bad)
    assert gc.isenabled()
    gc.disable()
    try:
        conll.read_conll(tiny_train_path)
        assert not gc.isenabled()
    finally:
        gc.enable()


CLEAN = ("-DOCSTART- -X- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\n"
         "Blackburn I-PER\n")


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", ["", "\ufeff"])
@pytest.mark.parametrize("final_newline", [True, False])
def test_line_ends_bom_and_a_missing_final_newline_read_the_same(ending, bom, final_newline):
    from fastner.conll import read_blocks
    text = bom + CLEAN.replace("\n", ending)
    if not final_newline:
        text = text[:-len(ending)]
    got = parse_conll(io.BytesIO(text.encode()), name="x.txt")
    want = parse_conll(io.BytesIO(CLEAN.encode()), name="x.txt")
    assert [(s.tokens, s.tags, s.doc) for s in got] == [(s.tokens, s.tags, s.doc) for s in want]
    assert [s.tokens for s in got] == [["EU", "rejects", "German"], ["Peter", "Blackburn"]]
    # blocks of 7 bytes end mid-line, mid-CRLF and mid-BOM; the lines are the same
    lines = CLEAN.splitlines()
    for block_bytes in (7, 1, 1 << 20):
        blocks = list(read_blocks(io.BytesIO(text.encode()), "x.txt", block_bytes))
        assert [line for _, ls in blocks for line in ls] == lines
        firsts = [first for first, _ in blocks]
        assert firsts[0] == 1 and all(
            b == a + len(ls) for (a, ls), b in zip(blocks, firsts[1:]))


# -- read_blocks at its bounds (MAX_LINE_BYTES made small so the lines stay small) ------

def blocks_of(data, block_bytes, monkeypatch, max_line=10):
    from fastner import conll
    monkeypatch.setattr(conll, "MAX_LINE_BYTES", max_line)
    return list(conll.read_blocks(io.BytesIO(data), "x.txt", block_bytes))


def lines_of(blocks):
    return [line for _, lines in blocks for line in lines]


@pytest.mark.parametrize("block_bytes", [1, 3, 7, 64])    # 7: two whole lines, then a cut
def test_a_line_of_exactly_the_maximum_is_read_and_one_more_byte_is_not(block_bytes,
                                                                         monkeypatch):
    data = b"ab\n0123456789\ncd\n"
    assert lines_of(blocks_of(data, block_bytes, monkeypatch)) == ["ab", "0123456789", "cd"]
    with pytest.raises(ConllFormatError) as err:
        blocks_of(b"ab\nxy\n0123456789X\ncd\n", block_bytes, monkeypatch)
    assert str(err.value) == "x.txt:3: line longer than 10 bytes; not a CoNLL file?"


def test_reads_are_bounded_by_the_block_and_the_longest_line(monkeypatch):
    sizes = []

    class Recording(io.BytesIO):
        def read(self, n=-1):
            sizes.append(("read", n))
            return super().read(n)

        def readline(self, n=-1):
            sizes.append(("readline", n))
            return super().readline(n)
    from fastner import conll
    monkeypatch.setattr(conll, "MAX_LINE_BYTES", 10)
    list(conll.read_blocks(Recording(b"abc\ndefgh\n" * 5), "x", 4))
    assert sizes and all(n is not None and 0 < n <= 11 for _, n in sizes), sizes


def test_a_file_holding_only_a_bom_has_no_lines(monkeypatch):
    assert lines_of(blocks_of(b"\xef\xbb\xbf", 1 << 20, monkeypatch)) == []
    assert parse_conll(io.BytesIO(b"\xef\xbb\xbf")) == []


def test_undecodable_bytes_are_placed_by_line_and_file_offset(monkeypatch):
    data = b"\nab\ncd\n\xff\n"                 # a blank first line; the bad byte on line 4
    with pytest.raises(ConllFormatError) as err:
        blocks_of(data, 1 << 20, monkeypatch)
    assert str(err.value).startswith("x.txt:4: not UTF-8 text (byte 7 of the file:")
    with pytest.raises(ConllFormatError) as err:    # in a later block: the file's offset
        blocks_of(data, 3, monkeypatch)
    assert str(err.value).startswith("x.txt:4: not UTF-8 text (byte 7 of the file:")


def test_only_carriage_returns_are_stripped_from_line_ends(monkeypatch):
    data = b"MAX\tB-ORG \r\nXX O\r\nORG XX\r\n"
    assert lines_of(blocks_of(data, 1 << 20, monkeypatch, max_line=100)) == [
        "MAX\tB-ORG ", "XX O", "ORG XX"]


def test_tag_conll_gives_back_each_line_as_it_came_without_its_line_end(tmp_path,
                                                                         tiny_model_path):
    import subprocess
    import sys
    path = tmp_path / "in.txt"
    path.write_bytes(b"-DOCSTART- O\r\n\r\nXX O \r\nParis\tB-LOC\r\n")
    done = subprocess.run([sys.executable, "-m", "fastner.cli", "tag", "--quiet", "--model",
                           tiny_model_path, "--format", "conll", str(path)],
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode().splitlines()
    assert [line.rsplit(" ", 1)[0] for line in out if line] == [
        "-DOCSTART- O", "XX O ", "Paris\tB-LOC"]


# -- parse_conll -----------------------------------------------------------------

def test_read_conll_reads_untagged_files(tmp_path):
    path = tmp_path / "tokens.txt"
    path.write_bytes(b"EU NNP\nrejects VBZ\n")
    [sent] = read_conll(path, tagged=False)
    assert sent.tokens == ["EU", "rejects"] and sent.tags is None
    assert sent.extra == [("NNP",), ("VBZ",)]


def test_an_empty_document_still_counts():
    text = b"-DOCSTART- O\n\n-DOCSTART- O\n\nEU B-ORG\n\n-DOCSTART- O\n\nHi O\n"
    assert [s.doc for s in parse_conll(io.BytesIO(text))] == [1, 2]


def test_only_the_last_column_is_the_tag():
    sents = parse_conll(io.BytesIO(b"EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"))
    assert sents[0].tags == ["B-ORG", "O"]
    assert sents[0].extra == [("NNP", "B-NP"), ("VBZ", "B-VP")]
    with pytest.raises(ConllFormatError, match="<input>:2: 'NNP' is not an IOB tag"):
        parse_conll(io.BytesIO(b"EU NNP B-ORG\nrejects B-ORG NNP\n"))


def test_malformed_lines_are_quoted_as_they_are_read():
    with pytest.raises(ConllFormatError) as err:
        parse_conll(io.BytesIO(b"  EU\t\n"))
    assert str(err.value) == ("<input>:1: expected at least 2 columns (token ... NER-tag); "
                              "got '  EU'")
    with pytest.raises(ConllFormatError) as err:
        parse_conll(io.BytesIO(b"EU B-ORG\n  x y O  \n"))
    assert str(err.value).endswith("got 3: '  x y O'")


def test_long_lines_are_cut_in_messages_at_eighty_characters():
    from fastner.conll import _quote
    assert _quote("a" * 80) == repr("a" * 80)
    assert _quote("a" * 81) == repr("a" * 80) + "... (81 characters)"
    assert _quote("b" * 2000) == repr("b" * 80) + "... (2,000 characters)"


# -- write_conll -----------------------------------------------------------------

def written(sentences, predicted=None):
    buf = io.StringIO()
    write_conll(buf, sentences, predicted)
    return buf.getvalue()


def test_documents_are_separated_by_docstart_lines_as_wide_as_the_tokens():
    from fastner.conll import Sentence
    a = Sentence(["EU"], ["B-ORG"], 0, [("NNP", "B-NP")])
    b = Sentence(["Hi"], ["O"], 1, [("UH", "O")])
    assert written([a, b]) == "EU NNP B-NP B-ORG\n\n-DOCSTART- -X- -X- O\n\nHi UH O O\n\n"
    assert written([a, b], [["B-ORG"], ["O"]]) == (
        "EU NNP B-NP B-ORG B-ORG\n\n-DOCSTART- -X- -X- O O\n\nHi UH O O O\n\n")
    bare = [Sentence(["EU"], None, 0), Sentence(["Hi"], None, 1)]
    assert written(bare) == "EU\n\n-DOCSTART-\n\nHi\n\n"
    assert written(bare, [["B-ORG"], ["O"]]) == "EU B-ORG\n\n-DOCSTART- O\n\nHi O\n\n"
    assert written([Sentence(["EU"], ["B-ORG"], 3)]) == "EU B-ORG\n\n"


def test_middle_columns_are_written_where_a_token_has_them():
    from fastner.conll import Sentence
    sent = Sentence(["EU", "rejects"], ["B-ORG", "O"], 0, [("NNP",)])
    assert written([sent]) == "EU NNP B-ORG\nrejects O\n\n"
