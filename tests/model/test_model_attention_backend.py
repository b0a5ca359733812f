"""Attention kernels against a plain softmax(QK^T)V reference with a causal mask."""

import pytest
import torch

from crownq.model import attention_backend as ab


def _qkv(heads: int, kv_heads: int, dtype=torch.float32, device="cpu", seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 37, heads, 16)
    q = torch.randn(shape, generator=g)
    k = torch.randn(shape[:2] + (kv_heads, 16), generator=g)
    v = torch.randn(shape[:2] + (kv_heads, 16), generator=g)
    return (t.to(device=device, dtype=dtype) for t in (q, k, v))


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2), (8, 1)])
def test_sdpa_matches_reference(heads, kv_heads):
    q, k, v = _qkv(heads, kv_heads)
    out = ab.sdpa_attention(q, k, v)
    assert out.shape == q.shape
    torch.testing.assert_close(out, ab.reference_attention(q, k, v), atol=1e-5, rtol=1e-5)


def test_reference_is_causal_and_uses_own_kv_group():
    q, k, v = _qkv(4, 2)
    out = ab.reference_attention(q, k, v)
    # Position 0 can only attend to itself: its output is exactly its own value of the head's KV group.
    torch.testing.assert_close(out[:, 0, 0], v[:, 0, 0])
    torch.testing.assert_close(out[:, 0, 1], v[:, 0, 0])
    torch.testing.assert_close(out[:, 0, 2], v[:, 0, 1])


def test_auto_on_cpu_is_sdpa():
    assert ab.resolve_backend("auto", torch.device("cpu")) == "sdpa"
    q, k, v = _qkv(4, 2)
    torch.testing.assert_close(ab.causal_attention(q, k, v, "auto"), ab.sdpa_attention(q, k, v))


@pytest.mark.parametrize("backend", ["fa3", "fa2"])
def test_flash_on_cpu_tensors_fails_clearly(backend):
    with pytest.raises(RuntimeError, match="attn_backend"):
        ab.resolve_backend(backend, torch.device("cpu"))


@pytest.mark.parametrize("backend,available", [("fa3", ab.fa3_available), ("fa2", ab.fa2_available)])
def test_missing_flash_backend_fails_at_build(backend, available):
    if available():
        pytest.skip(f"{backend} is available here")
    from model_helpers import small_cfg

    from crownq.model import build_model

    with pytest.raises(ValueError, match=f"arch.attn_backend='{backend}'"):
        build_model(small_cfg(attn_backend=backend))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["fa3", "fa2", "sdpa"])
def test_cuda_backends_match_reference_in_bf16(backend):
    if backend == "fa3" and not ab.fa3_available() or backend == "fa2" and not ab.fa2_available():
        pytest.skip(f"{backend} not installed")
    q, k, v = _qkv(8, 4, dtype=torch.bfloat16, device="cuda")
    out = ab.causal_attention(q, k, v, backend)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ab.reference_attention(q, k, v), atol=2e-2, rtol=2e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_logits_agree_across_backends_under_bf16_autocast():
    from model_helpers import build, tokens

    backends = ["sdpa"] + [b for b, ok in (("fa3", ab.fa3_available()), ("fa2", ab.fa2_available())) if ok]
    if len(backends) == 1:
        pytest.skip("no FlashAttention installed: nothing to compare SDPA with")
    x = tokens(seq=64).cuda()
    outs = {}
    for backend in backends:
        model = build(seed=7, attn_backend=backend).cuda()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            outs[backend] = model.logits(x)
    for backend in backends[1:]:
        torch.testing.assert_close(outs[backend], outs["sdpa"], atol=5e-2, rtol=5e-2)
