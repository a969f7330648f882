"""Group-wise 4-bit weight quantization: the grid, round-to-nearest, and ORT's MatMulNBits layout.

Every INT4 variant in whylab ends up as ONNX Runtime ``MatMulNBits`` nodes. The grid here
is ONNX Runtime's own (``DefaultWeightOnlyQuantConfig``, the C++ blockwise quantizer):

* asymmetric: per group of ``block_size`` input weights, ``lo = min(min w, 0)``,
  ``hi = max(max w, 0)``, ``scale = (hi - lo) / 15``, ``zp = round(-lo / scale)``,
  ``code = clip(round(w / scale) + zp, 0, 15)``, ``w ≈ (code - zp) * scale``;
* symmetric: ``scale = w_absmax_signed / -8`` (the signed value of largest magnitude),
  ``zp = 8``.

Using the same grid for our own GPTQ and AWQ means a GPTQ-vs-RTN difference is a
difference of algorithm, not of grid (tests check we reproduce ORT's RTN codes exactly).
Weights are handled in torch's ``nn.Linear`` orientation ``(N out, K in)``; groups run
along K. A K that is not a multiple of the block size is padded with zeros (which the
grid always contains, so padding never changes a group's scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BITS = 4
MAXQ = 2**BITS - 1


@dataclass
class QuantizedWeight:
    """One linear layer's 4-bit weight: codes (N, K_padded) uint8, scales/zero points (N, k_blocks)."""

    codes: np.ndarray
    scales: np.ndarray
    zero_points: np.ndarray
    k: int
    block_size: int
    symmetric: bool

    @property
    def n(self) -> int:
        return int(self.codes.shape[0])

    @property
    def k_blocks(self) -> int:
        return int(self.scales.shape[1])

    @property
    def real_codes(self) -> np.ndarray:
        """Codes of the real K columns (padding dropped: quantizers fill it differently)."""
        return self.codes[:, : self.k]

    def dequantize(self) -> torch.Tensor:
        """The (N, K) float32 weight these codes stand for."""
        codes = torch.from_numpy(self.codes.astype(np.int32)).view(self.n, self.k_blocks, self.block_size)
        zp = torch.from_numpy(self.zero_points.astype(np.int32))[..., None]
        scales = torch.from_numpy(self.scales.astype(np.float32))[..., None]
        return ((codes - zp).float() * scales).reshape(self.n, -1)[:, : self.k]


def k_blocks(k: int, block_size: int) -> int:
    return (k + block_size - 1) // block_size


def group_params(groups: torch.Tensor, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for each row of ``groups`` (..., block) on ORT's grid."""
    groups = groups.float()
    if symmetric:
        idx = groups.abs().argmax(dim=-1, keepdim=True)
        signed_max = torch.gather(groups, -1, idx).squeeze(-1)
        scale = signed_max / -8.0
        scale = torch.where(scale == 0, torch.ones_like(scale), scale)
        zp = torch.full_like(scale, 8.0)
        return scale, zp
    lo = torch.clamp(groups.min(dim=-1).values, max=0.0)
    hi = torch.clamp(groups.max(dim=-1).values, min=0.0)
    scale = (hi - lo) / MAXQ
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    zp = torch.clamp(torch.round(-lo / scale), 0, MAXQ)
    return scale, zp


def quantize_codes(w: torch.Tensor, scale: torch.Tensor, zp: torch.Tensor) -> torch.Tensor:
    """Codes of ``w`` on the grid (scale, zp), broadcasting scale/zp over the last axis."""
    return torch.clamp(torch.round(w / scale) + zp, 0, MAXQ)


def _pad_k(weight: torch.Tensor, block_size: int) -> torch.Tensor:
    n, k = weight.shape
    padded = k_blocks(k, block_size) * block_size
    if padded == k:
        return weight
    return torch.cat([weight, weight.new_zeros(n, padded - k)], dim=1)


def rtn_quantize(weight: torch.Tensor, block_size: int, symmetric: bool = False) -> QuantizedWeight:
    """Round-to-nearest, group-wise along K: the baseline every other 4-bit method is held against."""
    weight = weight.detach().float()
    n, k = weight.shape
    groups = _pad_k(weight, block_size).view(n, -1, block_size)
    scale, zp = group_params(groups, symmetric)
    codes = quantize_codes(groups, scale[..., None], zp[..., None])
    return QuantizedWeight(
        codes=codes.reshape(n, -1).to(torch.uint8).numpy(),
        scales=scale.numpy().astype(np.float32),
        zero_points=zp.to(torch.uint8).numpy(),
        k=k,
        block_size=block_size,
        symmetric=symmetric,
    )


def fake_quantize(weight: torch.Tensor, block_size: int, symmetric: bool = False) -> torch.Tensor:
    """``dequantize(rtn_quantize(weight))`` in torch, differentiable-free and fast (used by AWQ's search)."""
    n, k = weight.shape
    groups = _pad_k(weight.float(), block_size).view(n, -1, block_size)
    scale, zp = group_params(groups, symmetric)
    codes = quantize_codes(groups, scale[..., None], zp[..., None])
    return ((codes - zp[..., None]) * scale[..., None]).reshape(n, -1)[:, :k]


def pack_matmulnbits(q: QuantizedWeight) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """ONNX Runtime's MatMulNBits tensors for ``q``: B (N, k_blocks, block/2) uint8, scales, zero points.

    Two codes per byte, the even K index in the low nibble; scales (N, k_blocks) float32;
    zero points (N, ceil(k_blocks/2)) uint8 packed the same way, or None when symmetric
    (the kernel then uses 8).
    """
    n, kb, bs = q.n, q.k_blocks, q.block_size
    codes = q.codes.astype(np.uint8).reshape(n, kb, bs)
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    if q.symmetric:
        return packed, q.scales.astype(np.float32), None
    zp = q.zero_points.astype(np.uint8)
    if kb % 2:
        zp = np.concatenate([zp, np.zeros((n, 1), dtype=np.uint8)], axis=1)
    packed_zp = (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8)
    return packed, q.scales.astype(np.float32), packed_zp


def unpack_matmulnbits(
    b: np.ndarray, scales: np.ndarray, zero_points: np.ndarray | None, k: int, block_size: int
) -> QuantizedWeight:
    """Inverse of :func:`pack_matmulnbits` (reads any MatMulNBits node's 4-bit weight)."""
    n, kb = b.shape[0], k_blocks(k, block_size)
    b = b.reshape(n, kb, block_size // 2)
    codes = np.stack([b & 0x0F, b >> 4], axis=-1).reshape(n, kb * block_size)
    scales = np.asarray(scales, dtype=np.float32).reshape(n, kb)
    if zero_points is None:
        zp = np.full((n, kb), 8, dtype=np.uint8)
        symmetric = True
    else:
        z = np.asarray(zero_points, dtype=np.uint8).reshape(n, -1)
        zp = np.stack([z & 0x0F, z >> 4], axis=-1).reshape(n, -1)[:, :kb]
        symmetric = False
    return QuantizedWeight(
        codes=codes.astype(np.uint8),
        scales=scales,
        zero_points=zp.astype(np.uint8),
        k=k,
        block_size=block_size,
        symmetric=symmetric,
    )
