"""AWQ against properties from the paper: α = 0 is RTN, salient channels make it beat RTN, folding is exact."""

from __future__ import annotations

import torch

from quant_support import QUANT_MODEL, _give_structure
from whylab.lm.model import build_model
from whylab.quant.awq import ScaleGroup, apply_scale, awq, channel_scales, search_scale
from whylab.quant.int4 import fake_quantize

torch.set_num_threads(1)


class Norm(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(k))


def salient_group(seed: int = 0, salient: int = 4, k: int = 64) -> ScaleGroup:
    """Inputs whose few channels are ~30× larger than the rest, as in AWQ's Figure 2."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(512, k, generator=gen)
    x[:, :salient] *= 30.0
    linear = torch.nn.Linear(k, 48, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(48, k, generator=gen) * 0.05)
    return ScaleGroup("g", [linear], Norm(k), x)


def output_error(group: ScaleGroup, weight: torch.Tensor) -> float:
    ref = group.inputs @ group.linears[0].weight.T
    return float(torch.mean((group.inputs @ weight.T - ref) ** 2))


def test_alpha_zero_is_round_to_nearest():
    group = salient_group()
    s = channel_scales(group.inputs, 0.0)
    assert torch.allclose(s, torch.ones_like(s))
    _, _, errors = search_scale(group, 32, [0.0])
    rtn = fake_quantize(group.linears[0].weight.data, 32)
    assert abs(errors[0.0] - output_error(group, rtn)) < 1e-9


def test_awq_beats_rtn_on_salient_channels():
    group = salient_group()
    alpha, s, errors = search_scale(group, 32, [i / 10 for i in range(11)])
    assert alpha > 0.0
    assert errors[alpha] < 0.8 * errors[0.0]  # clearly lower output error than plain RTN
    assert s[:4].mean() > s[4:].mean()  # salient channels are scaled up (protected)


def test_awq_gains_nothing_without_salient_channels():
    group = salient_group(salient=0)
    alpha, _, errors = search_scale(group, 32, [i / 10 for i in range(11)])
    assert errors[alpha] <= errors[0.0]
    assert errors[alpha] > 0.9 * errors[0.0]  # no outliers: little to protect


def test_folding_the_scales_keeps_the_float_function():
    group = salient_group()
    norm_out = group.inputs
    before = norm_out * group.previous.weight @ group.linears[0].weight.T
    apply_scale(group, channel_scales(group.inputs, 0.5))
    after = norm_out * group.previous.weight @ group.linears[0].weight.T
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_awq_on_a_llama_keeps_its_logits_and_lowers_calibration_error():
    torch.manual_seed(0)
    model = build_model(QUANT_MODEL, 200, pad_token_id=0, bos_token_id=1, eos_token_id=1).eval()
    _give_structure(model, 0)
    calib = torch.randint(0, 200, (4, 32), generator=torch.Generator().manual_seed(1))
    result = awq(model, calib, 32, alpha_grid=5, clip_grid=0)
    with torch.no_grad():
        ref = model(input_ids=calib).logits
        scaled = result.model(input_ids=calib).logits
    torch.testing.assert_close(scaled, ref, rtol=1e-4, atol=1e-4)  # scales folded exactly
    assert len(result.alphas) == 4 * QUANT_MODEL["num_layers"]
    assert all(e["awq"] <= e["rtn"] for e in result.errors.values())
    assert any(e["awq"] < 0.95 * e["rtn"] for e in result.errors.values())
    # the input model is left untouched
    assert not torch.equal(
        result.model.model.layers[0].input_layernorm.weight, model.model.layers[0].input_layernorm.weight
    )
