"""The scoring forward pass: short inputs packed into shared rows score as they do alone."""

from reward.score import forward, forward_pass, rows
from reward.server import load_model


def test_rows_pack_first_fit_longest_first_within_the_longest_width():
    lengths = [6, 3, 1, 2, 6, 4]
    packed = rows(lengths)
    assert packed == [[0], [4], [5, 3], [1, 2]]
    assert all(sum(lengths[i] for i in r) <= 6 for r in packed)
    assert sorted(i for r in packed for i in r) == list(range(len(lengths)))


def test_a_packed_pass_scores_each_input_as_alone_and_reports_its_padded_size(tiny_rm):
    rm = load_model("x", str(tiny_rm))
    pad = rm.tokenizer.pad_token_id
    # The last input ends in padding of its own: scored at its last non-pad token, as transformers does.
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [5, 6, 7, pad, pad]]
    scores, padded = forward_pass(rm.model, pad, seqs)
    alone = [forward(rm.model, pad, [s])[0] for s in seqs]
    assert max(abs(a - b) for a, b in zip(scores, alone, strict=True)) < 1e-5
    assert abs(scores[3] - scores[0]) < 1e-5
    # Rows of width 6: [6], [5, 1], [3] -> 3 rows x 6 positions (padded one per row: 4 x 6).
    assert padded == 18
    assert forward_pass(rm.model, pad, seqs[:1])[1] == 3
