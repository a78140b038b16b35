"""Beam search and sampling against a scripted model with hand-computed answers."""

from __future__ import annotations

import math

import pytest
import torch

from seq2seq.decoding.beam import beam_search, block_repeated_ngrams, topk_rows
from seq2seq.decoding.common import length_penalty
from seq2seq.decoding.greedy import greedy_search
from seq2seq.decoding.sampling import sample
from seq2seq.models.base import EncoderDecoder
from seq2seq.special import BOS_ID, EOS_ID, PAD_ID

V = 10
A, B, C, D = 4, 5, 6, 7  # word ids


class ScriptedModel(EncoderDecoder):
    """A fake model whose next-token distribution is a function of the prefix.

    ``policy(src, prefix)`` gets the real source tokens and the generated prefix
    (tuples, BOS excluded) and returns ``{token: probability}`` (unlisted
    tokens get probability 0) or a (V,) tensor of logits. The state carries the
    prefix as a batch-first (B, t) tensor, so the base ``reorder_state`` works.
    """

    def __init__(self, policy, max_positions=None):
        super().__init__()
        self.policy, self._max_positions = policy, max_positions
        self.batch_sizes: list[int] = []  # rows seen by each step call

    def encode(self, src, src_lengths):
        return {"src": src, "src_lengths": src_lengths}

    def init_state(self, memory):
        src = memory["src"]
        return {**memory, "prefix": src.new_empty((src.size(0), 0))}

    def step(self, tgt, state):
        prefix = torch.cat([state["prefix"], tgt[:, None]], dim=1)  # (B, t + 1) fed tokens, BOS first
        self.batch_sizes.append(tgt.size(0))
        rows = zip(state["src"].tolist(), state["src_lengths"].tolist(), prefix.tolist(), strict=True)
        logits = torch.stack([self.row_logits(tuple(s[:n]), tuple(p[1:])) for s, n, p in rows])
        return logits, {**state, "prefix": prefix}

    def row_logits(self, src, prefix):
        out = self.policy(src, prefix)
        if isinstance(out, torch.Tensor):
            return out
        logits = torch.full((V,), -math.inf)
        for token, prob in out.items():
            logits[token] = math.log(prob)
        return logits

    @property
    def max_positions(self):
        return self._max_positions


def table_policy(table, default=None):
    return lambda src, prefix: table.get(prefix, default or {EOS_ID: 1.0})


def random_policy(src, prefix):
    """Pseudo-random logits, a fixed function of (src, prefix); EOS grows likelier."""
    g = torch.Generator().manual_seed(hash((src, prefix)) % (2**31))
    logits = 2.0 * torch.randn(V, generator=g)
    logits[PAD_ID] = logits[BOS_ID] = -math.inf
    logits[EOS_ID] += 0.6 * len(prefix) - 1.0
    return logits


def batch(*sentences):
    """Pad token lists into (B, S) src and (B,) src_lengths."""
    lengths = torch.tensor([len(s) for s in sentences])
    src = torch.full((len(sentences), int(lengths.max())), PAD_ID)
    for i, s in enumerate(sentences):
        src[i, : len(s)] = torch.tensor(s)
    return src, lengths


def sequence_log_prob(model, src_tokens, tokens):
    """Sum of the model's log-probs of ``tokens`` followed by EOS."""
    src, lengths = batch(src_tokens)
    state = model.init_state(model.encode(src, lengths))
    total = 0.0
    for prev, nxt in zip([BOS_ID] + tokens, tokens + [EOS_ID], strict=True):
        logits, state = model.step(torch.tensor([prev]), state)
        total += float(torch.log_softmax(logits, dim=-1)[0, nxt])
    return total


def tokens_of(results):
    return [[h.tokens for h in hyps] for hyps in results]


# Greedy takes A (0.5) then C: P = 0.5 * 0.45 = 0.225; beam 2 finds B EOS: 0.4 * 0.9 = 0.36.
GARDEN_PATH = {
    (): {A: 0.5, B: 0.4, EOS_ID: 0.1},
    (A,): {C: 0.45, D: 0.3, EOS_ID: 0.25},
    (B,): {EOS_ID: 0.9, C: 0.1},
}
# Short [A] has P = 0.3, long [B, C, D] has P = 0.4 * 0.625 = 0.25: the penalty decides.
SHORT_OR_LONG = {
    (): {A: 0.6, B: 0.4},
    (A,): {EOS_ID: 0.5, C: 0.3, D: 0.2},
    (B,): {C: 0.625, EOS_ID: 0.375},
    (B, C): {D: 1.0},
}
SENTENCES = [[4, 5, 6, 7, 8], [9, 4], [5, 5, 6, 7, 8, 9, 4], [6, 7, 8]]


def test_beam_finds_better_sequence_than_greedy():
    model = ScriptedModel(table_policy(GARDEN_PATH))
    src, lengths = batch([4])
    (greedy,) = greedy_search(model, src, lengths)
    assert greedy[0].tokens == [A, C]
    assert greedy[0].log_prob == pytest.approx(math.log(0.225), abs=1e-5)
    (beam,) = beam_search(model, src, lengths, beam_size=2, alpha=0.0)
    assert tokens_of([beam]) == [[[B]]]
    assert beam[0].log_prob == pytest.approx(math.log(0.36), abs=1e-5)
    assert beam[0].score == pytest.approx(math.log(0.36), abs=1e-5)


def test_nbest_order_and_scores_by_hand():
    model = ScriptedModel(table_policy(GARDEN_PATH))
    src, lengths = batch([4])
    (hyps,) = beam_search(model, src, lengths, beam_size=3, nbest=3, alpha=0.0)
    # The empty hypothesis (0.1) and [A] (0.125) lose to these three.
    assert [h.tokens for h in hyps] == [[B], [A, C], [A, D]]
    expected = [math.log(0.36), math.log(0.225), math.log(0.15)]
    assert [h.score for h in hyps] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "kind, alpha, nbest, expected",
    [
        ("gnmt", 0.0, 1, [([A], math.log(0.3))]),
        ("gnmt", 1.0, 1, [([B, C, D], math.log(0.25) / (9 / 6))]),  # len 4 incl. EOS: (5 + 4) / 6
        ("gnmt", 1.0, 2, [([B, C, D], math.log(0.25) / (9 / 6)), ([A], math.log(0.3) / (7 / 6))]),
        ("power", 1.0, 1, [([B, C, D], math.log(0.25) / 4)]),  # len 4 incl. EOS
        ("power", 1.0, 2, [([B, C, D], math.log(0.25) / 4), ([A, C], math.log(0.18) / 3)]),
    ],
)
def test_length_penalty_changes_the_winner(kind, alpha, nbest, expected):
    # With alpha = 1 the search must keep [B, C] alive after [A] finished; a bound
    # using the current length's penalty (log 0.25 / (7/6) = -1.19 < -1.03) would stop.
    model = ScriptedModel(table_policy(SHORT_OR_LONG))
    src, lengths = batch([4])
    (hyps,) = beam_search(model, src, lengths, beam_size=2, nbest=nbest, alpha=alpha, kind=kind, patience=0)
    assert [h.tokens for h in hyps] == [tokens for tokens, _ in expected]
    assert [h.score for h in hyps] == pytest.approx([score for _, score in expected], abs=1e-5)
    assert hyps[0].log_prob == pytest.approx(math.log(0.3 if alpha == 0 else 0.25), abs=1e-5)


def test_patience_stops_after_enough_finished_hypotheses():
    # Beam 2, power penalty: [A] finishes at step 2 and [A, C] at step 3, [B, C, D] only at
    # step 4 although it scores best. Patience 0.5 stops after one finished hypothesis,
    # patience 1 after two; patience 2 waits for [B, C, D].
    model = ScriptedModel(table_policy(SHORT_OR_LONG))
    src, lengths = batch([4])
    for patience, winner in ((0.5, [A]), (1.0, [A, C]), (2.0, [B, C, D])):
        (hyps,) = beam_search(model, src, lengths, beam_size=2, alpha=1.0, kind="power", patience=patience)
        assert hyps[0].tokens == winner, patience
    with pytest.raises(ValueError, match="patience"):
        beam_search(model, src, lengths, beam_size=2, nbest=2, patience=0.5)


def test_reorder_state_before_step_equals_after():
    model = ScriptedModel(random_policy)
    src, lengths = batch(*SENTENCES)
    state = model.init_state(model.encode(src, lengths))
    _, state = model.step(torch.tensor([A, B, C, D]), state)
    prev = torch.tensor([B, C, D, A])
    for index in (torch.tensor([2, 0, 3, 1]), torch.tensor([1, 1, 3, 3, 0])):
        logits_a, state_a = model.step(prev[index], model.reorder_state(state, index))
        logits_b, state_b = model.step(prev, state)
        assert torch.equal(logits_a, logits_b[index])
        assert torch.equal(state_a["prefix"], model.reorder_state(state_b, index)["prefix"])


def test_sentence_without_eos_stops_at_length_limit():
    model = ScriptedModel(table_policy({}, default={A: 0.6, B: 0.4 - 1e-7, EOS_ID: 1e-7}))
    src, lengths = batch([4, 5, 6], [7, 8])  # limits ceil(1.5 * 3 + 1) = 6 and ceil(1.5 * 2 + 1) = 4
    runs = {
        "greedy": greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=1),
        "beam": beam_search(model, src, lengths, beam_size=3, nbest=2, max_len_a=1.5, max_len_b=1),
        "sample": sample(model, src, lengths, max_len_a=1.5, max_len_b=1, generator=torch.Generator()),
    }
    for name, results in runs.items():
        for hyps, limit in zip(results, (6, 4), strict=True):
            assert all(len(h.tokens) == limit - 1 for h in hyps), name  # the forced EOS is the last token
    assert [hyps[0].tokens for hyps in runs["beam"]] == [[A] * 5, [A] * 3]
    capped = ScriptedModel(model.policy, max_positions=3)
    assert [len(h[0].tokens) for h in beam_search(capped, src, lengths, beam_size=5)] == [2, 2]


def test_hypotheses_are_consistent_with_the_model():
    model = ScriptedModel(random_policy)
    src, lengths = batch(*SENTENCES)
    results = beam_search(model, src, lengths, beam_size=4, nbest=4, alpha=0.6)
    for sentence, hyps in zip(SENTENCES, results, strict=True):
        assert len(hyps) == 4
        assert len({tuple(h.tokens) for h in hyps}) == 4  # distinct
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert EOS_ID not in h.tokens and BOS_ID not in h.tokens
            assert h.log_prob == pytest.approx(sequence_log_prob(model, sentence, h.tokens), abs=1e-4)
            assert h.score == pytest.approx(h.log_prob / length_penalty(len(h.tokens), 0.6), abs=1e-4)


def test_batched_equals_one_at_a_time():
    model = ScriptedModel(random_policy)
    src, lengths = batch(*SENTENCES)
    batched = beam_search(model, src, lengths, beam_size=3, nbest=3, no_repeat_ngram_size=2)
    for sentence, hyps in zip(SENTENCES, batched, strict=True):
        (alone,) = beam_search(model, *batch(sentence), beam_size=3, nbest=3, no_repeat_ngram_size=2)
        assert [h.tokens for h in hyps] == [h.tokens for h in alone]
        assert [h.score for h in hyps] == pytest.approx([h.score for h in alone], abs=1e-5)


def test_finished_sentences_leave_the_batch():
    quick = {(): {EOS_ID: 0.99, A: 0.01}}
    slow = {(): {A: 0.9, EOS_ID: 0.1}, (A,): {B: 0.9, EOS_ID: 0.1}, (A, B): {EOS_ID: 1.0}}
    model = ScriptedModel(lambda src, prefix: table_policy(quick if src == (4,) else slow)(src, prefix))
    src, lengths = batch([4], [5])
    beam_search(model, src, lengths, beam_size=2, alpha=0.0)
    assert model.batch_sizes == [2, 2, 2]  # one row per sentence first; then the slow one's 2 beams


def test_beam_size_one_equals_greedy():
    model = ScriptedModel(random_policy)
    src, lengths = batch(*SENTENCES)
    greedy = greedy_search(model, src, lengths)
    beam = beam_search(model, src, lengths, beam_size=1, alpha=0.0)
    assert tokens_of(beam) == tokens_of(greedy)
    for b, g in zip(beam, greedy, strict=True):
        assert b[0].log_prob == pytest.approx(g[0].log_prob, abs=1e-4)
    # With a length penalty a width-1 beam may keep going after greedy's EOS, but
    # it only ever replaces greedy's hypothesis by a better-scoring one.
    for b, g in zip(beam_search(model, src, lengths, beam_size=1, alpha=1.0), greedy, strict=True):
        assert b[0].score >= g[0].log_prob / length_penalty(len(g[0].tokens), 1.0) - 1e-5


@pytest.mark.parametrize("width", [8000, 8013])  # split into blocks of 64; no even split
def test_blockwise_topk_equals_topk(width):
    torch.manual_seed(0)
    x = torch.randn(37, width)
    x[0, :] = -math.inf  # a fully masked row
    x[1, :-1] = -math.inf  # only the very last column is finite
    x[2, ::2] = -math.inf
    x[3, width - 5 :] = 10.0 + torch.arange(5.0)  # the best values all in the last block
    values, ids = topk_rows(x, 10)
    ref_values, ref_ids = x.topk(10, dim=-1)
    assert torch.equal(values, ref_values)
    assert torch.equal(ids[2:], ref_ids[2:])  # rows 0 and 1 tie at -inf, the ids may differ
    assert torch.equal(x.gather(1, ids), values)


def test_block_repeated_ngrams_by_hand():
    tokens = torch.tensor([[A, B, C, A, B], [A, B, C, D, A]])
    out = block_repeated_ngrams(torch.zeros(2, V), tokens, 3)
    assert torch.isinf(out[0]).nonzero().flatten().tolist() == [C]  # "A B" was followed by C
    assert not torch.isinf(out[1]).any()  # "D A" never occurred before
    out = block_repeated_ngrams(torch.zeros(2, V), tokens, 1)
    assert torch.isinf(out[1]).nonzero().flatten().tolist() == [A, B, C, D]


def test_no_repeat_ngram_blocks_repeats():
    def cycle(src, prefix):  # A B A B ... is by far the likeliest
        nxt, other = (B, A) if prefix and prefix[-1] == A else (A, B)
        return {nxt: 0.7, other: 0.15, C: 0.1, EOS_ID: 0.05}

    model = ScriptedModel(cycle)
    src, lengths = batch([4, 5])
    (free,) = beam_search(model, src, lengths, beam_size=3, nbest=3)
    assert free[0].tokens[:4] == [A, B, A, B]
    for n in (1, 2, 3):
        (hyps,) = beam_search(model, src, lengths, beam_size=3, nbest=3, no_repeat_ngram_size=n)
        for h in hyps:
            ngrams = [tuple(h.tokens[i : i + n]) for i in range(len(h.tokens) - n + 1)]
            assert len(ngrams) == len(set(ngrams))


def test_sampling_top_k_1_and_tiny_top_p_equal_greedy():
    model = ScriptedModel(random_policy)
    src, lengths = batch(*SENTENCES)
    greedy = greedy_search(model, src, lengths)
    g = torch.Generator().manual_seed(0)
    for kwargs in ({"top_k": 1}, {"top_p": 1e-6}, {"temperature": 1e-3}):
        samples = sample(model, src, lengths, generator=g, **kwargs)
        assert tokens_of(samples) == tokens_of(greedy), kwargs
        assert [s[0].log_prob for s in samples] == pytest.approx([h[0].log_prob for h in greedy], abs=1e-4)


def test_sampling_is_reproducible_and_scored_by_the_model():
    model = ScriptedModel(random_policy)
    src, lengths = batch(*SENTENCES)

    def draw(seed):
        return sample(model, src, lengths, temperature=1.5, generator=torch.Generator().manual_seed(seed))

    first, again, other = draw(0), draw(0), draw(1)
    assert tokens_of(first) == tokens_of(again)
    assert tokens_of(first) != tokens_of(other)
    for sentence, (h,) in zip(SENTENCES, first, strict=True):
        assert EOS_ID not in h.tokens
        assert h.log_prob == pytest.approx(sequence_log_prob(model, sentence, h.tokens), abs=1e-4)


def test_sampling_follows_the_filtered_distribution():
    model = ScriptedModel(table_policy(GARDEN_PATH))
    src, lengths = batch(*[[4]] * 1000)
    g = torch.Generator().manual_seed(0)
    firsts = [h[0].tokens[:1] for h in sample(model, src, lengths, generator=g)]
    assert firsts.count([A]) / 1000 == pytest.approx(0.5, abs=0.06)
    assert firsts.count([]) / 1000 == pytest.approx(0.1, abs=0.04)  # EOS first
    for kwargs in ({"top_k": 2}, {"top_p": 0.85}):  # both keep A and B only
        firsts = [h[0].tokens[:1] for h in sample(model, src, lengths, generator=g, **kwargs)]
        assert sorted(set(map(tuple, firsts))) == [(A,), (B,)], kwargs
    firsts = [h[0].tokens[:1] for h in sample(model, src, lengths, top_p=0.3, generator=g)]
    assert set(map(tuple, firsts)) == {(A,)}


def test_scalar_output_limit_equals_the_batched_one():
    from seq2seq.decoding.common import max_output_length, max_output_lengths

    lengths = torch.arange(0, 300)
    for a, b, cap in ((1.5, 10, 256), (0.0, 5, None), (1.2, 0, 7), (0.0, 0, None)):
        batched = max_output_lengths(lengths, a, b, cap).tolist()
        assert [max_output_length(n, a, b, cap) for n in lengths.tolist()] == batched
