"""GPTQ's act-order and true-sequential, and the cross-check against torchao's GPTQ.

torchao 0.18's ``torchao.prototype.gptq.gptq_quantize`` asserts a CUDA device ("GPTQ only
supports CUDA currently") and its INT4 path needs the ``mslk`` package, which is not on PyPI
for this stack. So on a CPU machine the cross-check is the stated reason (a test that fails
the day torchao runs on CPU), and on a CUDA machine it runs for real on torchao's INT8
per-row grid, which needs no mslk: same layer, same Hessian, same grid; the codes must agree
(≥ 99%, fp32 on the GPU vs fp64 here flips a few ties) and the objective tr(ΔH Δᵀ)/N within 1%.
Independent of torchao, act-order is checked against Optimal Brain Surgeon's recursion written
without Cholesky factors or lazy batches.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from pt_quant_helpers import tiny_llama
from whylab.quant.gptq import HessianAccumulator, gptq_model, gptq_quantize, hessian, layer_error
from whylab.quant.int4 import MAXQ, group_params, rtn_quantize

torch.set_num_threads(1)


def correlated(n: int, k: int, seed: int, spread: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, k, generator=gen) @ torch.randn(k, k, generator=gen) * 0.3 + torch.randn(
        n, k, generator=gen
    )
    if spread:  # unequal input energies, so act-order has an order to follow
        x = x * torch.linspace(0.2, 3.0, k)[torch.randperm(k, generator=gen)]
    return x


def naive_obs_act_order(
    w: torch.Tensor, h: torch.Tensor, block_size: int, percdamp: float = 0.01
) -> np.ndarray:
    """OBS's recursion in the order of decreasing H_jj, with each group's grid fixed from the original
    weights: the definition act-order with static groups implements, with an explicit inverse."""
    w = w.double().clone()
    h = h.double().clone()
    n, k = w.shape
    grids = [group_params(w[:, g : g + block_size], symmetric=False) for g in range(0, k, block_size)]
    h += percdamp * torch.mean(torch.diag(h)) * torch.eye(k, dtype=h.dtype)
    order = torch.argsort(torch.diag(h), descending=True, stable=True).tolist()
    hinv = torch.linalg.inv(h)
    codes = np.zeros((n, k), dtype=np.uint8)
    remaining = list(range(k))
    for j in order:
        scale, zp = grids[j // block_size]
        code = torch.clamp(torch.round(w[:, j] / scale) + zp, 0, MAXQ)
        codes[:, j] = code.numpy().astype(np.uint8)
        err = (w[:, j] - (code - zp) * scale) / hinv[j, j]
        w[:, remaining] -= err[:, None] * hinv[j, remaining][None, :]
        hinv = hinv - hinv[:, j : j + 1] @ hinv[j : j + 1, :] / hinv[j, j]
        remaining.remove(j)
    return codes


def test_act_order_matches_the_obs_recursion_in_its_order():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(16, 64, generator=gen) * 0.05
    h = hessian(correlated(400, 64, 3))
    ours = gptq_quantize(w, h, 32, lazy_columns=32, act_order=True)
    assert (ours.real_codes == naive_obs_act_order(w, h, 32)).mean() > 0.99


def test_act_order_keeps_the_plain_layout_and_lowers_the_objective_on_uneven_inputs():
    gen = torch.Generator().manual_seed(11)
    w = torch.randn(48, 128, generator=gen) * 0.05
    h = hessian(correlated(1024, 128, 12))
    plain = gptq_quantize(w, h, 32)
    ordered = gptq_quantize(w, h, 32, act_order=True)
    rtn = rtn_quantize(w, 32)
    # static groups: the grid is RTN's, group by group in K order (no permutation to store)
    np.testing.assert_array_equal(ordered.scales, rtn.scales)
    np.testing.assert_array_equal(ordered.zero_points, rtn.zero_points)
    assert layer_error(w, ordered, h) < layer_error(w, rtn, h)
    assert layer_error(w, plain, h) < layer_error(w, rtn, h)


def _reference_gptq_model(model, calibration: torch.Tensor, block_size: int) -> dict:
    """The former whylab loop: one full-model forward per decoder layer, all of a layer's Hessians
    in that pass (no true-sequential), no act-order."""
    work = copy.deepcopy(model).float().eval()
    modules = dict(work.named_modules())
    out = {}
    for index in range(len(work.model.layers)):
        group = [n for n, m in modules.items() if isinstance(m, torch.nn.Linear) and f"layers.{index}." in n]
        acc = {n: HessianAccumulator(modules[n].in_features) for n in group}
        hooks = [modules[n].register_forward_pre_hook(lambda _m, a, h=acc[n]: h.add(a[0])) for n in group]
        with torch.no_grad():
            work(input_ids=calibration, attention_mask=torch.ones_like(calibration), use_cache=False)
        for hook in hooks:
            hook.remove()
        for n in group:
            q = gptq_quantize(modules[n].weight.detach(), acc[n].h, block_size)
            with torch.no_grad():
                modules[n].weight.copy_(q.dequantize())
            out[n] = q
    return out


def test_layer_input_capture_reproduces_full_model_forwards():
    model = tiny_llama(outliers=False)
    calib = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    ours = gptq_model(model, calib, 32, act_order=False, true_sequential=False, batch_size=4)
    ref = _reference_gptq_model(model, calib, 32)
    assert set(ours) == set(ref)
    agree = np.mean([np.mean(ours[n].real_codes == ref[n].real_codes) for n in ref])
    assert agree > 0.999


def test_true_sequential_calibrates_later_linears_on_quantized_earlier_ones():
    model = tiny_llama(outliers=False)
    calib = torch.randint(0, 128, (4, 32), generator=torch.Generator().manual_seed(1))
    seen: dict[bool, dict[str, torch.Tensor]] = {True: {}, False: {}}
    for ts in (True, False):
        gptq_model(
            model,
            calib,
            32,
            true_sequential=ts,
            on_layer=lambda n, w, q, h, ts=ts: seen[ts].__setitem__(n, h),
        )
    first = "model.layers.0."
    # q/k/v are the first step: the same Hessian either way
    torch.testing.assert_close(
        seen[True][first + "self_attn.q_proj"], seen[False][first + "self_attn.q_proj"]
    )
    # o_proj reads attention over quantized v (true-sequential) or over float v (one pass)
    assert not torch.allclose(seen[True][first + "self_attn.o_proj"], seen[False][first + "self_attn.o_proj"])


def test_the_lm_head_and_embedding_stay_float():
    model = tiny_llama(outliers=False)
    calib = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(3))
    out = gptq_model(model, calib, 32)
    assert "lm_head" not in out and len(out) == 7 * len(model.model.layers)
    assert all(".layers." in n for n in out)


def test_torchao_gptq_cannot_run_on_cpu():
    """The stated reason the cross-check below is CUDA-only: if torchao starts running on CPU this
    fails, and the cross-check should run everywhere."""
    from torchao.prototype.gptq import GPTQConfig
    from torchao.prototype.gptq import gptq_quantize as ao_gptq
    from torchao.quantization import Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerRow

    cfg = GPTQConfig(step="convert", base_config=Int8WeightOnlyConfig(granularity=PerRow()))
    with pytest.raises(AssertionError, match="CUDA"):
        ao_gptq(torch.eye(16), torch.randn(8, 16), cfg)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torchao's GPTQ asserts a CUDA device")
def test_gptq_agrees_with_torchao_on_its_int8_per_row_grid():
    from torchao.prototype.gptq import GPTQConfig
    from torchao.prototype.gptq import gptq_quantize as ao_gptq
    from torchao.quantization import Int8Tensor, Int8WeightOnlyConfig
    from torchao.quantization.granularity import PerRow

    gen = torch.Generator().manual_seed(21)
    w = torch.randn(64, 256, generator=gen) * 0.05
    h = hessian(correlated(2048, 256, 22, spread=False))
    cfg = GPTQConfig(
        step="convert", base_config=Int8WeightOnlyConfig(granularity=PerRow()), gptq_quantize_block_size=256
    )  # one lazy batch = the whole row: torchao takes the per-row scale from the first batch's columns
    theirs = ao_gptq(h.float().cuda().clone(), w.float().cuda().clone(), cfg)
    scale = Int8Tensor.from_hp(w, PerRow()).scale.view(-1).double()
    ours = gptq_quantize(
        w,
        h,
        256,
        lazy_columns=256,
        maxq=255,
        params=lambda g: (scale, torch.full_like(scale, 128.0)),
    )
    codes_theirs = theirs.qdata.cpu().numpy().astype(np.int32) + 128
    assert np.mean(ours.real_codes.astype(np.int32) == codes_theirs) > 0.99
    deq = theirs.dequantize(output_dtype=torch.float).cpu().double()
    err_theirs = float(torch.einsum("nk,kl,nl->", w - deq, h, w - deq) / w.shape[0])
    assert abs(layer_error(w, ours, h) / err_theirs - 1) < 0.01
