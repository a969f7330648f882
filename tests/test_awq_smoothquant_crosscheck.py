"""whylab's AWQ and SmoothQuant against torchao 0.18's prototype implementations, on one layer.

AWQ: ``torchao.prototype.awq.AWQObserver.calculate_qparams`` is torchao's scale search. It runs on
CPU with ``IntxWeightOnlyConfig(int4, PerGroup)`` as the base config (its convert step does not:
that weight type has no activation pre-scaling on CPU, so only the search is compared). Same
layer, same calibration inputs, same α grid (i/20, i < 20), and torchao's own 4-bit grid passed to
our search: the chosen scales must be equal (rtol 1e-5). With each side on its own grid (ours is
ONNX Runtime's asymmetric INT4, torchao's is symmetric), both must beat RTN, and ours must be no
worse than torchao's output error by more than 10%.

SmoothQuant: ``torchao.prototype.smoothquant`` runs fully on CPU over
``Int8DynamicActivationInt8WeightConfig``. Same layer and inputs at α = 0.5: the smoothing
factors must agree to 1e-4 (they differ only in how a zero max is guarded: torchao adds float32
eps, we floor at 1e-5); the W8A8 outputs (torchao's INT8 kernels vs our fake quantization with
per-token activations) must each be within 2% RMS of the FP32 output, within 2% of each other,
and both at least 2x better than naive W8A8 (measured: 0.74% torchao, 0.60% ours, 2.2% naive).
"""

from __future__ import annotations

import torch

from whylab.quant import smoothquant as sq
from whylab.quant.awq import ScaleGroup, search_scale
from whylab.quant.int4 import fake_quantize

torch.set_num_threads(1)


def salient_inputs(tokens: int = 512, k: int = 128, seed: int = 0) -> torch.Tensor:
    """Channels of log-normally spread magnitude (a heavy tail of salient ones, as LLM activations)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, k, generator=gen)
    return x * torch.exp(torch.randn(k, generator=gen))


def outlier_inputs(seed: int = 0) -> torch.Tensor:
    """(4, 128, 128) activations with three outlier channels 40x the rest (SmoothQuant's case)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 128, 128, generator=gen) * 0.5
    x[..., [3, 40, 77]] *= 40.0
    return x


def layer(n: int = 96, k: int = 128, seed: int = 1) -> torch.nn.Linear:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(k, n, bias=False)
    with torch.no_grad():
        lin.weight.mul_(2.0)
    return lin


def torchao_awq_search(lin: torch.nn.Linear, x: torch.Tensor, group: int, options: int):
    from torchao.prototype.awq import AWQConfig
    from torchao.quantization import IntxWeightOnlyConfig, quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.transform_module import _QUANTIZE_CONFIG_HANDLER
    from torchao.utils import DummyModule

    base = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(group))
    model = torch.nn.Sequential(torch.nn.Linear(lin.in_features, lin.out_features, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(lin.weight)
    quantize_(model, AWQConfig(base, step="prepare", scale_search_space_size=options))
    with torch.no_grad():
        model(x)
    scales = model[0].act_obs.calculate_qparams()

    def quantizer(w: torch.Tensor) -> torch.Tensor:
        handler = _QUANTIZE_CONFIG_HANDLER[type(base)]
        return handler(DummyModule(w.detach().clone()), base).weight.dequantize().float()

    return scales, quantizer


def _our_group(lin: torch.nn.Linear, x: torch.Tensor) -> ScaleGroup:
    norm = torch.nn.Module()
    norm.weight = torch.nn.Parameter(torch.ones(lin.in_features))
    return ScaleGroup("one", [lin], norm, x)


def _output_error(lin: torch.nn.Linear, x: torch.Tensor, s: torch.Tensor, quantizer) -> float:
    with torch.no_grad():
        ref = x @ lin.weight.T
        q = quantizer(lin.weight * s) / s
        return float(((x @ q.T) - ref).pow(2).mean())


def test_awq_scale_search_equals_torchao_on_the_same_grid():
    lin, x = layer(), salient_inputs()
    theirs, ao_quantizer = torchao_awq_search(lin, x, 32, 20)
    alphas = [i / 20 for i in range(20)]
    alpha, ours, _errors = search_scale(_our_group(lin, x), 32, alphas, quantizer=ao_quantizer)
    assert alpha > 0  # the salient channels make the search move away from RTN
    torch.testing.assert_close(ours, theirs.float(), rtol=1e-5, atol=1e-6)


def test_awq_on_each_own_grid_is_within_ten_percent_of_torchao():
    lin, x = layer(), salient_inputs()
    theirs, ao_quantizer = torchao_awq_search(lin, x, 32, 20)
    alphas = [i / 20 for i in range(20)]
    _, ours, _ = search_scale(_our_group(lin, x), 32, alphas)
    own = lambda w: fake_quantize(w, 32)  # noqa: E731
    ones = torch.ones(lin.in_features)
    err_ours, err_theirs = (
        _output_error(lin, x, ours, own),
        _output_error(lin, x, theirs.float(), ao_quantizer),
    )
    assert err_ours < _output_error(lin, x, ones, own)
    assert err_theirs < _output_error(lin, x, ones, ao_quantizer)
    assert err_ours <= 1.10 * err_theirs


def test_smoothquant_factors_and_w8a8_output_agree_with_torchao():
    from torchao.prototype.smoothquant import SmoothQuantConfig
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    lin = layer()
    x = outlier_inputs()
    base = Int8DynamicActivationInt8WeightConfig()
    model = torch.nn.Sequential(torch.nn.Linear(128, 96, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(lin.weight)
        quantize_(model, SmoothQuantConfig(base, step="prepare", alpha=0.5))
        model(x)
        factors_theirs = model[0].obs.calculate_qparams()[0]
        quantize_(model, SmoothQuantConfig(base, step="convert", alpha=0.5))
        out_theirs = model(x)

        act = x.reshape(-1, 128).abs().amax(dim=0)
        factors = sq.smoothing_factors(act, lin.weight.abs().amax(dim=0), 0.5)
        smoothed = torch.nn.Linear(128, 96, bias=False)
        smoothed.weight.copy_(lin.weight * factors)
        out_ours = sq.W8A8Linear(smoothed, "per_token_dynamic")(x / factors)
        out_naive = sq.W8A8Linear(lin, "per_token_dynamic")(x)
        ref = lin(x)

    torch.testing.assert_close(factors, factors_theirs, rtol=1e-4, atol=0)

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt())

    assert rel(out_theirs, ref) < 0.02 and rel(out_ours, ref) < 0.02
    assert rel(out_ours, out_theirs) < 0.02
    assert rel(out_naive, ref) > 2 * max(rel(out_theirs, ref), rel(out_ours, ref))
