"""The faster training pieces compute what the plain ones compute, within stated tolerances."""

from __future__ import annotations

import pytest
import torch

from seq2seq import device as device_module
from seq2seq.data.collate import collate
from seq2seq.device import pick_precision
from seq2seq.models import Transformer
from seq2seq.models.dropout import LEVELS, dropout
from seq2seq.models.transformer import MultiHeadAttention
from seq2seq.training.loss import CHUNK, label_smoothed_cross_entropy
from seq2seq.training.schedule import inverse_sqrt
from seq2seq.training.step import Objective, Optimization, train_step

CPU = torch.device("cpu")


def plain_loss(logits, target, epsilon):
    """The textbook formula through autograd (the loss before the fused one)."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    keep = target != 0
    nll = -log_probs.gather(1, target.unsqueeze(1)).squeeze(1)
    loss = (1 - epsilon) * nll - epsilon * log_probs.mean(dim=-1)
    return loss[keep].sum(), nll[keep].sum()


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_fused_loss_and_gradient_match_the_formula(dtype, tol):
    torch.manual_seed(0)
    logits = (torch.randn(CHUNK + 300, 50) * 3).to(dtype).requires_grad_()  # two chunks
    target = torch.randint(0, 50, (CHUNK + 300,))
    target[::5] = 0  # padding
    loss, nll = label_smoothed_cross_entropy(logits, target, 0.1)
    ref_loss, ref_nll = plain_loss(logits, target, 0.1)
    assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)
    assert nll.item() == pytest.approx(ref_nll.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(loss, logits)
    (ref_grad,) = torch.autograd.grad(ref_loss, logits)
    assert grad.dtype == dtype
    assert (grad.double() - ref_grad).abs().max().item() < tol
    assert grad[::5].abs().max().item() == 0.0  # padding rows get no gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_overwriting_the_logits_gives_the_same_gradients(dtype):
    """Training's loss writes the logits' gradient over the logits (a non-leaf output of
    the output layer); the gradients reaching the layer are the same, bit for bit."""
    torch.manual_seed(0)
    x = torch.randn(CHUNK + 10, 16, dtype=dtype, requires_grad=True)
    weight = torch.randn(50, 16, dtype=dtype, requires_grad=True)
    target = torch.randint(0, 50, (CHUNK + 10,))
    grads = []
    for overwrite in (False, True):
        logits = x @ weight.T  # (N, V)
        loss, _ = label_smoothed_cross_entropy(logits, target, 0.1, overwrite_logits=overwrite)
        grads.append(torch.autograd.grad(loss, (x, weight)))
    assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


@pytest.mark.slow
def test_fused_loss_passes_gradcheck():
    logits = torch.randn(CHUNK + 3, 6, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 6, (CHUNK + 3,))
    assert torch.autograd.gradcheck(lambda x: label_smoothed_cross_entropy(x, target, 0.2)[0], (logits,))


def test_cpu_dropout_rate_scale_and_seed():
    x = torch.ones(1000, 1000)
    torch.manual_seed(3)
    y = dropout(x, 0.1, training=True)
    kept = round(0.1 * LEVELS)
    assert y.unique().tolist() == [0.0, pytest.approx(LEVELS / (LEVELS - kept))]
    assert (y == 0).float().mean().item() == pytest.approx(0.1, abs=2e-3)
    assert (y[:, ::2] == 0).float().mean().item() == pytest.approx(0.1, abs=3e-3)  # both halves
    assert (y[:, 1::2] == 0).float().mean().item() == pytest.approx(0.1, abs=3e-3)  # of a word
    assert y.mean().item() == pytest.approx(1.0, abs=3e-3)
    torch.manual_seed(3)
    assert torch.equal(dropout(x, 0.1, training=True), y)
    assert dropout(x, 0.1, training=False) is x


def tiny_batch():
    src = [[5, 6, 7, 8, 3], [9, 10, 3]]
    tgt = [[11, 12, 13], [14, 15, 16, 17, 18]]
    return collate(src, tgt)


@pytest.mark.parametrize("causal", [True, False])
def test_explicit_attention_equals_the_fused_kernel(causal):
    """The explicit softmax (taken on the CPU for bf16, for attention dropout, and for
    weights) gives the fused kernel's output."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(32, 4, dropout=0.0, cross=False).eval()
    x = torch.randn(3, 7, 32)
    mask = None if causal else (torch.arange(7) < torch.tensor([[7], [4], [2]])).view(3, 1, 1, 7)
    fused, _, _ = attention(x, mask)
    explicit, _, weights = attention(x, mask, need_weights=True)  # (B, h, T, S)
    allowed = torch.ones(7, 7, dtype=torch.bool).tril() if causal else mask  # where a key may be seen
    assert weights.shape == (3, 4, 7, 7) and (weights.masked_select(~allowed) == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, 7))
    assert torch.allclose(explicit, fused, atol=1e-6)


def one_step(model, precision, fused=False, objective=None, steps=1):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, inverse_sqrt(1))
    opt = Optimization(optimizer, scheduler, torch.amp.GradScaler("cpu", enabled=False), 0.1, 1.0)
    objective = Objective(model) if objective is None else objective
    return [train_step(objective, tiny_batch(), opt, CPU, precision).loss for _ in range(steps)]


def tiny_model():
    torch.manual_seed(0)
    return Transformer(40, 40, d_model=32, heads=4, ffn_dim=64, dropout=0.0)


def test_bf16_step_loss_matches_fp32_within_one_percent():
    fp32, bf16 = tiny_model(), tiny_model()
    losses32, losses16 = one_step(fp32, "fp32", steps=3), one_step(bf16, "bf16", steps=3)
    for a, b in zip(losses32, losses16, strict=True):
        assert b == pytest.approx(a, rel=1e-2)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())  # autocast keeps fp32 weights


def test_fused_adam_matches_the_loop():
    """Weights within 1e-6 after one update of 1e-3 (the same gradients), losses within
    1e-6 (relative) over three. Weights are not compared after several updates: the
    attention keys' bias has a gradient of pure rounding noise (softmax ignores a shift
    of all scores), which Adam scales up to a sizeable step, differently in each
    run once the weights differ by a rounding."""
    loop, fused = tiny_model(), tiny_model()
    one_step(fused, "fp32", fused=True)
    one_step(loop, "fp32")
    for p, q in zip(loop.parameters(), fused.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
    loop, fused = tiny_model(), tiny_model()
    losses = one_step(fused, "fp32", fused=True, steps=3)
    assert losses == pytest.approx(one_step(loop, "fp32", steps=3), rel=1e-6)


@pytest.mark.slow
def test_compiled_step_loss_matches_eager_within_1e_5():
    eager, compiled = tiny_model(), tiny_model()
    objective = torch.compile(Objective(compiled), dynamic=True)
    a = one_step(eager, "fp32", steps=2)
    b = one_step(compiled, "fp32", objective=objective, steps=2)
    assert b == pytest.approx(a, rel=1e-5)


def test_auto_precision_is_bf16_for_training_on_amx_cpus_only(monkeypatch):
    monkeypatch.setattr(device_module, "cpu_has_amx_bf16", lambda: True)
    assert pick_precision("auto", CPU) == "bf16"
    assert pick_precision("auto", CPU, "precision", train=False) == "fp32"
    monkeypatch.setattr(device_module, "cpu_has_amx_bf16", lambda: False)
    assert pick_precision("auto", CPU) == "fp32"
    assert pick_precision("fp32", CPU) == "fp32"


def test_padded_output_rows_change_no_loss_or_gradient():
    """Under CPU autocast the output layer's rows are padded to a multiple of 256, so that
    oneDNN meets a few shapes rather than a new one per batch (which grew the process
    until it ran out of memory); the losses and weights stay those of no padding."""
    assert device_module.output_rows_multiple(CPU, "bf16") == 256
    assert device_module.output_rows_multiple(CPU, "fp32") == 1
    seen = []
    plain, padded = tiny_model(), tiny_model()
    padded.output.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    a = one_step(plain, "fp32", steps=2)
    b = one_step(padded, "fp32", objective=Objective(padded, rows_multiple=256), steps=2)
    assert seen == [256, 256]  # the tiny batch's few target tokens, padded
    assert b == pytest.approx(a, rel=1e-6)
    for p, q in zip(plain.parameters(), padded.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)
