"""nGPT (model.architecture=ngpt, arXiv 2410.01131, NVIDIA/ngpt): the block, the logits and the
initialization written out here from the paper and the official code, in float64, without the
implementation's helpers; the checkpoint round trip and the config errors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from test_model_checkpoint import _load_in_fresh_process, _save_with_reference

from ibnorm_llm.analysis.capture import capture, norm_modules
from ibnorm_llm.config import ConfigError, ModelConfig, NormConfig
from ibnorm_llm.models import build_model, load_model
from ibnorm_llm.models.export import ExportError, stock_norm_eps

VOCAB = 512  # above the token ids of test_model_checkpoint.PROMPT
D, HEADS, D_FF = 32, 4, 48
HEAD_DIM = D // HEADS


def _ngpt(seed: int = 0, **fields) -> torch.nn.Module:
    fields = {"d_model": D, "n_heads": HEADS, "d_ff": D_FF, "n_layers": 2, **fields}
    torch.manual_seed(seed)
    return build_model(ModelConfig(preset="llama-tiny", architecture="ngpt", **fields), VOCAB).double().eval()


def _perturb_scales(model: torch.nn.Module) -> None:
    """Every nGPT vector off its constant init (so that a wrong element-wise product shows)."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.mul_(1 + 0.5 * torch.rand(p.shape, generator=generator, dtype=p.dtype))


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """LLaMA's rotary embedding, (T, heads, head_dim): dims i and i + head_dim/2 rotated by pos * theta^(-2i/hd)
    (cos and sin computed in fp32, as LLaMA's rotary embedding does whatever the model's dtype)."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, x.shape[-1], 2).float() / x.shape[-1])
    freqs = positions[:, None].float() * inv_freq
    cos, sin = freqs.cos().double()[:, None, :], freqs.sin().double()[:, None, :]
    a, b = x[..., :half], x[..., half:]
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)


def _reference_block(block, h: torch.Tensor, theta: float) -> torch.Tensor:
    """One nGPT block on one sequence h (T, d), from the paper (Sec. 2) and NVIDIA/ngpt model.py."""
    base = 1 / math.sqrt(D)
    attn, mlp = block.self_attn, block.mlp
    T = h.shape[0]
    pos = torch.arange(T)
    q = (h @ attn.q_proj.weight.T).view(T, HEADS, HEAD_DIM)
    k = (h @ attn.k_proj.weight.T).view(T, HEADS, HEAD_DIM)
    v = (h @ attn.v_proj.weight.T).view(T, HEADS, HEAD_DIM)
    s_qk = (attn.s_qk * (1.0 / base)).view(HEADS, HEAD_DIM)  # init 1, scaling 1/sqrt(d)
    q = s_qk * _norm(_rope(q, pos, theta))
    k = s_qk * _norm(_rope(k, pos, theta))
    scores = torch.einsum("qhd,khd->hqk", q, k) * math.sqrt(HEAD_DIM)  # softmax scale sqrt(d_k)
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
    y = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(T, D)
    h_a = y @ attn.o_proj.weight.T
    # model.py: res = A_norm + lr * (B_norm - A_norm), A_norm = justnorm(h) ("normally not needed":
    # h is unit-norm already, here to fp32 precision after the weights were normalized in fp32)
    alpha_a = (block.attn_alpha * (0.05 / base)).abs()
    h = _norm(_norm(h) + alpha_a * (_norm(h_a) - _norm(h)))
    s_u = mlp.s_u * 1.0 * math.sqrt(D)  # suv: init 1, scaling 1, times sqrt(n_embd)
    s_v = mlp.s_v * 1.0 * math.sqrt(D)
    u = s_u * (h @ mlp.up_proj.weight.T)
    gate = s_v * (h @ mlp.gate_proj.weight.T)
    h_m = (u * F.silu(gate)) @ mlp.down_proj.weight.T
    alpha_m = (block.mlp_alpha * (0.05 / base)).abs()
    return _norm(_norm(h) + alpha_m * (_norm(h_m) - _norm(h)))


def test_block_and_logits_are_the_papers_equations():
    model = _ngpt()
    _perturb_scales(model)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(tokens).logits
    theta = model.config.rope_parameters["rope_theta"]
    for row in range(2):
        h = model.model.embed_tokens.weight[tokens[row]]  # no scale, no norm: unit rows already
        with torch.no_grad():
            for block in model.model.layers:
                h = _reference_block(block, h, theta)
            s_z = model.lm_head.s_z * (1.0 / (1 / math.sqrt(D)))
            expected = s_z * (h @ model.lm_head.weight.T)
        torch.testing.assert_close(logits[row], expected, rtol=1e-10, atol=1e-10)


def test_init_unit_matrices_and_scale_vectors():
    model = _ngpt()
    names = dict(model.named_parameters())
    # NVIDIA/ngpt train.py normalize_matrices: (V, d) tables and q/k/v/c_fc along dim 1, the output
    # projections along dim 0: every vector of width d has length 1.
    along = {"embed_tokens": 1, "lm_head": 1, "q_proj": 1, "k_proj": 1, "v_proj": 1, "up_proj": 1, "gate_proj": 1,
             "o_proj": 0, "down_proj": 0}
    matrices = [n for n, p in names.items() if p.dim() == 2]
    assert len(matrices) == 2 + 2 * 7
    for name in matrices:
        dim = next(d for key, d in along.items() if key in name)
        assert names[name].shape[dim] == D
        torch.testing.assert_close(names[name].norm(dim=dim), torch.ones(names[name].shape[1 - dim], dtype=torch.float64))
    base = 1 / math.sqrt(D)
    expected = {"attn_alpha": (D, base), "mlp_alpha": (D, base), "self_attn.s_qk": (D, base), "mlp.s_u": (D_FF, 1.0),
                "mlp.s_v": (D_FF, 1.0)}
    for i in range(2):
        for key, (size, value) in expected.items():
            p = names[f"model.layers.{i}.{key}"]
            assert p.shape == (size,) and torch.all(p == torch.tensor(value, dtype=torch.float32).double()), key
    assert names["lm_head.s_z"].shape == (model.config.vocab_size,)
    assert torch.all(names["lm_head.s_z"] == torch.tensor(base, dtype=torch.float32).double())
    vectors = sorted(n for n, p in names.items() if p.dim() == 1)
    assert len(vectors) == 2 * 5 + 1  # no norm gains anywhere
    assert not any("norm" in n for n in names)
    assert isinstance(model.model.norm, torch.nn.Identity)
    assert model.model.embed_tokens.padding_idx is None
    scales = model.config.ngpt
    assert scales["attn_alpha"] == {"init": 0.05, "scaling": base} and scales["s_z"] == {"init": 1.0, "scaling": base}


def test_post_optimizer_step_puts_matrices_back_on_the_sphere():
    model = _ngpt().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(1))
    model(tokens, labels=tokens).loss.backward()
    optimizer.step()
    o_proj = model.model.layers[0].self_attn.o_proj.weight
    assert (o_proj.norm(dim=0) - 1).abs().max() > 1e-3  # the step moved it off the sphere
    assert model.requires_post_optimizer_step
    model.post_optimizer_step()
    torch.testing.assert_close(o_proj.norm(dim=0), torch.ones(D, dtype=torch.float64))
    torch.testing.assert_close(model.lm_head.weight.norm(dim=1), torch.ones(model.config.vocab_size, dtype=torch.float64))


def test_checkpoint_round_trip(tmp_path):
    model = _ngpt().float()
    _perturb_scales(model)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    model.save_pretrained(tmp_path / "ckpt")
    loaded = load_model(tmp_path / "ckpt").eval()
    assert loaded.config.ngpt == model.config.ngpt
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, model(tokens).logits)
    with pytest.raises(ExportError, match="nGPT"):
        stock_norm_eps(loaded.config)


@pytest.mark.slow
def test_checkpoint_loads_with_remote_code_where_ibnorm_llm_is_absent(tmp_path):
    model = _ngpt().float()
    _perturb_scales(model)
    tokens = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(2))
    expected = _save_with_reference(model, tmp_path / "ngpt", tokens)
    assert (tmp_path / "ngpt" / "ngpt_blocks.py").is_file()
    result = _load_in_fresh_process({"ngpt": str(tmp_path / "ngpt")}, tmp_path)["ngpt"]
    assert result["max_logit_diff"] <= 1e-5 and result["resaved_max_logit_diff"] <= 1e-5
    assert result["cached"] == result["uncached"] == expected
    assert result["norm_modules"] == ["torch.nn.modules.linear"]  # model.norm is an identity, no norm code


def test_generate_with_kv_cache_matches_full_forward():
    model = _ngpt().float()
    prompt = torch.randint(0, VOCAB, (1, 5), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=4, do_sample=False, pad_token_id=0)
        full = model(out[:, :-1]).logits[0, -1].argmax()
    assert out[0, -1] == full


def test_capture_has_no_norms_but_every_block():
    model = _ngpt().float()
    assert norm_modules(model) == {}
    tokens = torch.randint(0, VOCAB, (2, 17), generator=torch.Generator().manual_seed(5))
    seen = capture(model, tokens, n_tokens=16)
    assert len(seen.states) == 3 and not seen.norm_inputs
    torch.testing.assert_close(seen.states[2].norm(dim=1), torch.ones(16))  # block outputs on the sphere


@pytest.mark.parametrize(("fields", "match"), [
    ({"preset": "gpt2-tiny"}, "LLaMA family only"),
    ({"n_kv_heads": 2}, "s_qk per head"),
])
def test_unsupported_models_are_refused(fields, match):
    with pytest.raises(ConfigError, match=match):
        build_model(ModelConfig(architecture="ngpt", **fields), VOCAB)


@pytest.mark.parametrize("fields", [
    {"norm": NormConfig(kind="layernorm")}, {"norm_placement": "peri"}, {"qk_norm": NormConfig()},
    {"final_norm": NormConfig()}, {"norm_scaling": "lns"}, {"init_std": 0.01}, {"embed_init_std": 0.5},
])
def test_norm_settings_are_refused_not_ignored(fields):
    key = next(iter(fields))
    with pytest.raises(ConfigError, match=rf"model\.{key} is set but model\.architecture=ngpt"):
        ModelConfig(architecture="ngpt", **fields)
