"""fastner.tags: the IOB2 tag set, its ids, its transition masks, and spans."""
import numpy as np
import pytest

from fastner.tags import TagSet, is_valid_tag, spans, to_iob2


def test_ids_are_o_then_b_and_i_of_each_type_in_order():
    tags = TagSet(["PER", "LOC"])
    assert tags.names == ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"] and len(tags) == 5
    ids = tags.encode(["O", "B-LOC", "I-LOC"])
    assert ids.dtype == np.int32 and ids.tolist() == [0, 3, 4]
    assert tags.decode([2, 0, 1]) == ["I-PER", "O", "B-PER"]
    with pytest.raises(ValueError, match=r"tag 'B-ORG' is not in the tag set \['O', 'B-PER'"):
        tags.encode(["B-ORG"])


def test_tag_sets_are_equal_when_their_names_are():
    assert TagSet(["PER"]) == TagSet(["PER"])
    assert TagSet(["PER"]) != TagSet(["LOC"])
    assert TagSet(["PER"]) != ["O", "B-PER", "I-PER"]


def test_from_sequences_orders_conll_types_first_then_the_rest_sorted():
    seqs = [["B-ZOO", "O", "B-PER"], ["I-LOC", "B-ART"]]
    assert TagSet.from_sequences(seqs).entity_types == ("PER", "LOC", "ART", "ZOO")


def test_the_transition_mask_forbids_exactly_the_invalid_iob2_moves():
    tags = TagSet(["PER", "LOC"])
    trans, start = tags.transition_mask()
    assert trans.dtype == start.dtype == np.float32
    assert trans.shape == (5, 5) and start.shape == (5,)
    for i, prev in enumerate(tags.names):
        for j, name in enumerate(tags.names):
            allowed = not name.startswith("I-") or prev in ("B-" + name[2:], name)
            assert trans[i, j] == (0.0 if allowed else -np.inf), (prev, name)
    assert start.tolist() == [0.0, 0.0, -np.inf, 0.0, -np.inf]


def test_spans_of_types_with_hyphens_and_at_the_edges():
    assert spans(["B-WORK-OF-ART", "I-WORK-OF-ART", "O"]) == [("WORK-OF-ART", 0, 2)]
    assert spans(["I-PER"]) == [("PER", 0, 1)]
    assert spans(["O", "B-PER", "I-PER"]) == [("PER", 1, 3)]
    assert spans([]) == [] and spans(["O", "O"]) == []
    assert spans(["B-PER", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 2)]
    assert to_iob2(["I-WORK-OF-ART", "I-WORK-OF-ART"]) == ["B-WORK-OF-ART", "I-WORK-OF-ART"]


@pytest.mark.parametrize("tag,valid", [("O", True), ("B-PER", True), ("I-WORK-OF-ART", True),
                                       ("B-", False), ("E-PER", False), ("o", False),
                                       ("B-PER ", False), ("B PER", False), ("", False)])
def test_valid_tags(tag, valid):
    assert is_valid_tag(tag) == valid


def test_entity_runs_take_any_sequence_of_ids_and_confidences():
    tags = TagSet(["PER", "LOC"])
    starts, ends, kinds, conf = tags.entity_runs([0, 1, 2, 3], [1.0, 0.9, 0.5, 0.8])
    assert starts.tolist() == [1, 3] and ends.tolist() == [3, 4] and kinds.tolist() == [0, 1]
    assert conf.tolist() == pytest.approx([0.5, 0.8])
