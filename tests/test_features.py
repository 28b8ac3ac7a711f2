import pytest

from fastner.features import (
    AffixFeature,
    DocCaseFeature,
    DocumentContext,
    ShapeFeature,
    Vocab,
    _shape_key,
    caps_class,
    make_features,
)


def test_vocab_lowercases_and_falls_back_to_digit_shape():
    vocab = Vocab(["paris", "0000", "1996"])
    assert vocab.id("PARIS") == vocab.index["paris"]
    assert vocab.id("1996") == vocab.index["1996"]
    assert vocab.id("2024") == vocab.index["0000"]
    assert vocab.id("Atlantis") == 1 and vocab.words[:2] == ("<pad>", "<unk>")


def test_vocabulary_words_are_left_alone_by_the_cyclic_collector():
    # a tuple of strings, which the collector stops tracking, so its full collections
    # do not walk the 400k words of a loaded model (a list they would)
    import gc
    vocab = Vocab([f"w{i}" for i in range(1000)])
    gc.collect()
    assert isinstance(vocab.words, tuple) and not gc.is_tracked(vocab.words)


def test_caps_classes():
    assert [caps_class(t) for t in ["the", "EU", "Paris", "McDonald", "1996", "."]] == \
        [2, 3, 4, 5, 6, 6]


def test_affix_and_shape():
    suffix = AffixFeature("suffix", 3, 4, ["ing", "ion"])
    assert suffix.ids(["Running", "nation", "cat"]).tolist() == [2, 3, 1]
    assert _shape_key("McDonald's") == "XxXx'x" and _shape_key("1996-08-22") == "d-d-d"
    shape = ShapeFeature(3, ["Xx"])
    assert shape.ids(["Paris", "EU"]).tolist() == [2, 1]


def test_document_casing_classes():
    doc = [["SOCCER", "-", "JAPAN", "WIN", "IN", "ASIAN", "CUP"],
           ["The", "team", "from", "Japan", "won", "the", "Asian", "cup", "."],
           ["Win", "or", "lose", ",", "Tokyo", "cheered", "."]]
    context = DocumentContext(doc)
    feature = DocCaseFeature()
    headline = feature.ids(doc[0], context).tolist()
    # JAPAN: titled elsewhere; WIN: only sentence-initial "Win" elsewhere (no evidence);
    # CUP: "cup" lower elsewhere; ASIAN: titled elsewhere; "-": no letters
    assert headline == [6, 2, 3, 6, 6, 3, 5]
    second = feature.ids(doc[1], context).tolist()
    assert second[0] == 5            # "The" — "the" lower-case elsewhere
    assert second[3] == 6            # "Japan" — its only other use is in the all-caps line
    assert feature.ids(["Tokyo"], None).tolist() == [6]


def test_make_features_spec():
    features = make_features("caps:3,suffix2:4,shape:2,doccase:3", [], Vocab([]), 50)
    assert [f.name for f in features] == ["word", "caps", "suffix2", "shape", "doccase"]
    assert [f.dim for f in features] == [50, 3, 4, 2, 3]
    assert [f.name for f in make_features("none", [], Vocab([]), 50)] == ["word"]
    with pytest.raises(ValueError, match="unknown feature 'colour'"):
        make_features("colour:3", [], Vocab([]), 50)
