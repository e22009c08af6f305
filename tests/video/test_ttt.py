"""TTT-Linear (spec video.md 3.3 / 3.9 checks): closed-form gradient, dual form, carried state, causality."""

import pytest
import torch

from polymodal.video.grounding.ttt import TTTLinear, dual_form, inner_loss_grad, layer_norm

torch.set_num_threads(1)


def _inner_setup(seed=0, B=2, H=3, m=5, d=4):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return dict(q=r(B, H, m, d), k=r(B, H, m, d), v=r(B, H, m, d), W=r(B, H, d, d) * 0.3, b=r(B, H, 1, d) * 0.1,
                gamma=1 + 0.2 * r(H, 1, d), beta=0.1 * r(H, 1, d), eta=torch.rand(B, H, m, generator=g,
                                                                                  dtype=torch.float64),
                scale=torch.tensor([1.0, 0.6, 0.2, 0.3, 0.25], dtype=torch.float64)[:m])


def test_closed_form_gradient_equals_autograd():
    s = _inner_setup()
    W = s["W"].clone().requires_grad_(True)
    b = s["b"].clone().requires_grad_(True)
    loss = 0.5 * ((layer_norm(s["k"] @ W + b, s["gamma"], s["beta"]) - (s["v"] - s["k"])) ** 2).sum()
    gW, gb = torch.autograd.grad(loss, (W, b))
    dz = inner_loss_grad(s["k"], s["v"], s["W"], s["b"], s["gamma"], s["beta"])
    torch.testing.assert_close(s["k"].transpose(-1, -2) @ dz, gW, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(dz.sum(-2, keepdim=True), gb, rtol=1e-6, atol=1e-9)


def _token_loss(W, b, k, v, gamma, beta):
    return 0.5 * ((layer_norm(k @ W + b, gamma, beta) - (v - k)) ** 2).sum(-1)  # (B, H, m)


def test_dual_form_equals_explicit_gradient_steps():
    """Token i reads with W_i = W_0 - s_i sum_{j<=i} eta_j grad l_j(W_0) (one explicit autograd step per prefix);
    the weights after the last token are the step with s_m."""
    s = _inner_setup()
    read, W_new, b_new = dual_form(s["q"], s["k"], s["v"], s["eta"], s["scale"], s["W"], s["b"], s["gamma"],
                                   s["beta"])
    m = s["q"].shape[2]
    for i in range(m):
        W = s["W"].clone().requires_grad_(True)
        b = s["b"].clone().requires_grad_(True)
        losses = _token_loss(W, b, s["k"], s["v"], s["gamma"], s["beta"])
        weighted = (s["scale"][i] * s["eta"][..., : i + 1] * losses[..., : i + 1]).sum()
        gW, gb = torch.autograd.grad(weighted, (W, b))
        Wi, bi = s["W"] - gW, s["b"] - gb
        qi = s["q"][:, :, i : i + 1]
        expected = qi + layer_norm(qi @ Wi + bi, s["gamma"], s["beta"])
        torch.testing.assert_close(read[:, :, i : i + 1], expected, rtol=1e-6, atol=1e-9)
        if i == m - 1:
            torch.testing.assert_close(W_new, Wi, rtol=1e-6, atol=1e-9)
            torch.testing.assert_close(b_new, bi, rtol=1e-6, atol=1e-9)


def _layer(seed=0, width=16, heads=2, mb=4):
    torch.manual_seed(seed)
    layer = TTTLinear(width, heads, mini_batch=mb).double()
    with torch.no_grad():  # move away from the symmetric init so every term matters
        layer.pos_delta.normal_(0, 0.3)
        layer.lr_gate.bias.fill_(1.0)
        layer.ln_weight.normal_(1, 0.2)
        layer.b0.normal_(0, 0.1)
    return layer


def test_window_by_window_with_carried_state_equals_one_call():
    layer = _layer()
    x = torch.randn(3, 20, 16, dtype=torch.float64)
    mask = torch.rand(3, 20) > 0.2
    y_all, st_all = layer(x, None, mask)
    st = layer.init_state(3)
    ys = []
    for w in range(5):
        y, st = layer(x[:, 4 * w : 4 * w + 4], st, mask[:, 4 * w : 4 * w + 4])
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_all)
    torch.testing.assert_close(st.W, st_all.W)
    torch.testing.assert_close(st.b, st_all.b)


def test_fast_path_equals_reference_loop():
    layer = _layer(1)
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    st = layer.init_state(2)
    y1, s1 = layer(x, st)
    y2, s2 = layer._forward_loop(x, st, None)
    torch.testing.assert_close(y1, y2)
    torch.testing.assert_close(s1.W, s2.W)


def test_causal_future_tokens_never_change_earlier_outputs():
    layer = _layer(2)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    y, _ = layer(x)
    for cut in (2, 5, 8):  # inside a mini-batch and at a boundary
        x2 = x.clone()
        x2[:, cut:] = torch.randn_like(x2[:, cut:])
        y2, _ = layer(x2)
        torch.testing.assert_close(y2[:, :cut], y[:, :cut])
        assert not torch.allclose(y2[:, cut:], y[:, cut:])


def test_padding_tokens_do_not_change_the_memory():
    layer = _layer(3)
    x = torch.randn(1, 4, 16, dtype=torch.float64)
    _, st = layer(x, None, torch.zeros(1, 4, dtype=torch.bool))
    torch.testing.assert_close(st.W, layer.init_state(1).W)
    _, st2 = layer(x, None, torch.ones(1, 4, dtype=torch.bool))
    assert not torch.allclose(st2.W, st.W)


def test_outer_parameters_receive_gradients():
    layer = _layer(4)
    y, st = layer(torch.randn(2, 8, 16, dtype=torch.float64))
    (y.sum() + st.W.sum()).backward()
    for name in ("W0", "b0", "ln_weight", "pos_delta", "q_proj.weight", "k_proj.weight", "v_proj.weight"):
        assert dict(layer.named_parameters())[name].grad is not None, name
    assert layer.lr_gate.weight.grad.abs().sum() > 0


def test_width_must_divide_heads():
    with pytest.raises(ValueError, match="divisible"):
        TTTLinear(10, 3)
