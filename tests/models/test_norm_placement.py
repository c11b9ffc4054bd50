"""Norm placement (pre, post, peri, mix), LayerNorm Scaling and the query/key norm, both families.

Pre-LN with the stock norm equal to stock transformers is checked in test_model_forward.py
(every block runs the placement-aware forward, so that test covers its ``pre`` path).
"""

from __future__ import annotations

import math

import pytest
import torch

from ibnorm_llm.analysis.capture import capture, norm_modules
from ibnorm_llm.config import ConfigError, ModelConfig, NormConfig, load_config
from ibnorm_llm.models import build_model

FAMILIES = ("llama", "gpt2")
# per family: block list, attention, (input norm, Peri-LN output norm) of attention and of the MLP
LAYOUT = {
    "llama": ("model.layers", "self_attn", ("input_layernorm", "attn_output_layernorm"),
              ("post_attention_layernorm", "mlp_output_layernorm")),
    "gpt2": ("transformer.h", "attn", ("ln_1", "ln_attn_out"), ("ln_2", "ln_mlp_out")),
}


def _blocks(model, family):
    return model.get_submodule(LAYOUT[family][0])


def _record_block(model, family, index, tokens):
    """Input, output and the attention's call arguments of block ``index`` in one forward pass."""
    block = _blocks(model, family)[index]
    attention = getattr(block, LAYOUT[family][1])
    seen = {}
    handles = [
        block.register_forward_pre_hook(lambda _m, args, kwargs: seen.update(x=args[0]), with_kwargs=True),
        block.register_forward_hook(lambda _m, _args, out: seen.update(y=out)),
        attention.register_forward_pre_hook(lambda _m, args, kwargs: seen.update(attn_kwargs=kwargs), with_kwargs=True),
    ]
    with torch.no_grad():
        model(tokens, use_cache=False)
    for handle in handles:
        handle.remove()
    return seen


def _reference_block(block, family, placement, scale, x, attn_kwargs):
    """The papers' block equations, written out with the block's own sub-modules."""
    _, attention_name, (n1, o1), (n2, o2) = LAYOUT[family]
    attention = getattr(block, attention_name)
    kwargs = {k: v for k, v in attn_kwargs.items() if k != "hidden_states"}

    def attend(h):
        return attention(hidden_states=h, **kwargs)[0] if family == "llama" else attention(h, **kwargs)[0]

    def norm(name, h):
        return getattr(block, name)(h) * scale

    if placement == "pre":
        h = x + attend(norm(n1, x))
        return h + block.mlp(norm(n2, h))
    if placement == "post":
        h = norm(n1, x + attend(x))
        return norm(n2, h + block.mlp(h))
    h = x + norm(o1, attend(norm(n1, x)))
    return h + norm(o2, block.mlp(norm(n2, h)))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["pre", "post", "peri"])
@pytest.mark.parametrize("scaling", ["none", "lns"])
def test_block_output_is_the_papers_equation(family, placement, scaling, make_tiny, perturb, tokens):
    model = make_tiny(family, norm_placement=placement, norm_scaling=scaling)
    perturb(model, scale=0.2)
    index = 1  # depth 2: LayerNorm Scaling multiplies by 1/sqrt(2)
    seen = _record_block(model, family, index, tokens)
    block = _blocks(model, family)[index]
    scale = 1 / math.sqrt(2) if scaling == "lns" else 1.0
    with torch.no_grad():
        expected = _reference_block(block, family, placement, scale, seen["x"], seen["attn_kwargs"])
    assert expected.abs().max() > 0.1
    torch.testing.assert_close(seen["y"], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_placements_give_different_networks(family, make_tiny, perturb, tokens):
    logits = {}
    for placement in ("pre", "post", "peri", "mix"):
        model = make_tiny(family, n_layers=4, norm_placement=placement)  # mix: Post-LN in block 0 only
        perturb(model, scale=0.2)
        with torch.no_grad():
            logits[placement] = model(tokens).logits
    for a in logits:
        for b in logits:
            if a < b:
                assert (logits[a] - logits[b]).abs().max() > 1e-3, (a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_lns_scales_block_l_norm_outputs_by_exactly_one_over_sqrt_l(family, make_tiny, perturb, tokens):
    model = make_tiny(family, n_layers=4, norm_scaling="lns")
    perturb(model, scale=0.2)
    _, attention_name, (n1, _), (n2, _) = LAYOUT[family]
    outputs, consumed, handles = {}, {}, []
    for index, block in enumerate(_blocks(model, family)):
        for norm_name, consumer in ((n1, getattr(block, attention_name)), (n2, block.mlp)):
            key = (index, norm_name)
            handles.append(getattr(block, norm_name).register_forward_hook(
                lambda _m, _a, out, key=key: outputs.__setitem__(key, out)))
            handles.append(consumer.register_forward_pre_hook(
                lambda _m, args, kwargs, key=key: consumed.__setitem__(key, args[0] if args else kwargs["hidden_states"]),
                with_kwargs=True))
    with torch.no_grad():
        model(tokens, use_cache=False)
    for handle in handles:
        handle.remove()
    assert len(outputs) == 8
    for (index, norm_name), out in outputs.items():
        assert torch.equal(consumed[(index, norm_name)], out * (1.0 / math.sqrt(index + 1))), (index, norm_name)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(("fraction", "n_post"), [(None, 2), (0.5, 4), (0.3, 2), (0.9, 7)])
def test_mix_uses_post_ln_in_exactly_the_first_blocks(family, fraction, n_post, make_tiny, perturb, tokens):
    model = make_tiny(family, n_layers=8, norm_placement="mix", mix_ln_fraction=fraction)
    perturb(model, scale=0.2)
    assert model.config.mix_ln_fraction == (0.25 if fraction is None else fraction)
    blocks = _blocks(model, family)
    mlp_norm = LAYOUT[family][3][0]
    norm_out, block_out, handles = {}, {}, []
    for index, block in enumerate(blocks):
        handles.append(getattr(block, mlp_norm).register_forward_hook(
            lambda _m, _a, out, i=index: norm_out.__setitem__(i, out)))
        handles.append(block.register_forward_hook(lambda _m, _a, out, i=index: block_out.__setitem__(i, out)))
    with torch.no_grad():
        model(tokens, use_cache=False)
    # A Post-LN block's output is its last norm's output; a Pre-LN block's is a residual sum.
    post = [i for i in range(len(blocks)) if torch.equal(block_out[i], norm_out[i])]
    assert post == list(range(n_post))
    assert [block.placement for block in blocks] == ["post"] * n_post + ["pre"] * (8 - n_post)


@pytest.mark.parametrize("family", FAMILIES)
def test_qk_norm_changes_attention_logits_and_learns(family, make_tiny, perturb, tokens):
    plain = make_tiny(family)
    perturb(plain, scale=0.2)
    normed = make_tiny(family, qk_norm=NormConfig(kind="rmsnorm"))
    result = normed.load_state_dict(plain.state_dict(), strict=False)
    assert result.unexpected_keys == [] and all(".q_norm." in k or ".k_norm." in k for k in result.missing_keys)
    assert len(result.missing_keys) == 2 * 2  # q and k gains in each of 2 blocks
    attention = {}
    for name, model in (("plain", plain), ("normed", normed)):
        model.set_attn_implementation("eager")
        with torch.no_grad():
            attention[name] = model(tokens, output_attentions=True).attentions
    for a, b in zip(attention["plain"], attention["normed"], strict=True):
        assert (a - b).abs().max() > 1e-3
    # Each head's query is normalized: its RMS over head_dim is 1 at init (gain 1).
    q_norm = _blocks(normed, family)[0].get_submodule(f"{LAYOUT[family][1]}.q_norm")
    seen = {}
    handle = q_norm.register_forward_hook(lambda _m, _a, out: seen.update(q=out))
    normed.train()
    loss = normed(tokens, labels=tokens).loss
    handle.remove()
    assert seen["q"].shape[-1] == normed.config.hidden_size // normed.config.num_attention_heads
    torch.testing.assert_close(seen["q"].pow(2).mean(-1), torch.ones(seen["q"].shape[:-1]), rtol=1e-4, atol=1e-4)
    loss.backward()
    for key in result.missing_keys:
        grad = normed.get_parameter(key).grad
        assert grad is not None and grad.abs().sum() > 0, key


@pytest.mark.parametrize("family", FAMILIES)
def test_generation_with_and_without_kv_cache_agrees_for_every_layout(family, make_tiny, perturb):
    prompt = torch.tensor([[5, 17, 300, 42, 7]])
    for fields in (dict(norm_placement="post"), dict(norm_placement="peri", norm_scaling="lns"),
                   dict(norm_placement="mix", mix_ln_fraction=0.5, qk_norm=NormConfig(kind="ibnorm", variant="L"))):
        model = make_tiny(family, **fields)
        perturb(model, scale=0.2)
        cached = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = model.generate(prompt, max_new_tokens=6, do_sample=False, use_cache=False)
        assert cached.tolist() == uncached.tolist(), fields


@pytest.mark.parametrize("family", FAMILIES)
def test_every_registry_norm_composes_with_every_layout(family, make_tiny, tokens):
    from ibnorm_llm.norms import NORMS

    for kind in NORMS:
        norm = NormConfig(kind=kind)
        model = make_tiny(family, norm=norm, norm_placement="peri", norm_scaling="lns", qk_norm=norm)
        model.train()
        loss = model(tokens, labels=tokens).loss
        loss.backward()
        assert torch.isfinite(loss), kind
        assert all(p.grad is not None for p in model.parameters()), kind


@pytest.mark.parametrize("family", FAMILIES)
def test_analysis_finds_peri_and_qk_norms_by_name(family, make_tiny, tokens):
    model = make_tiny(family, norm_placement="peri", qk_norm=NormConfig(kind="ibnorm", variant="L", num_groups=2))
    blocks, attention, (_, o1), (_, o2) = LAYOUT[family]
    names = list(norm_modules(model))
    for index in range(2):
        for extra in (f"{attention}.q_norm", f"{attention}.k_norm", o1, o2):
            assert f"{blocks}.{index}.{extra}" in names
    captured = capture(model, tokens, n_tokens=16)
    heads = model.config.num_attention_heads
    q_name = f"{blocks}.1.{attention}.q_norm"
    assert captured.norm_inputs[q_name].shape == (16, model.config.hidden_size)
    assert captured.norm_groups[q_name] == 2 * heads and captured.norm_blocks[q_name] == 1
    assert captured.norm_groups[f"{blocks}.1.{o1}"] == 1


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.norm_placement=sandwich"], "model.norm_placement='sandwich': must be one of pre, post, peri, mix"),
        (["model.norm_placement=mix", "model.mix_ln_fraction=1.0"], "model.mix_ln_fraction=1.0: must be in (0, 1)"),
        (["model.norm_placement=mix", "model.mix_ln_fraction=0"], "model.mix_ln_fraction=0.0: must be in (0, 1)"),
        (["model.mix_ln_fraction=0.5"], "model.mix_ln_fraction=0.5 is set but model.norm_placement=pre"),
        (["model.norm_scaling=depth"], "model.norm_scaling='depth': must be one of none, lns"),
        (["model.qk_norm.kind=rmsnrom"], "model.qk_norm.kind='rmsnrom': unknown norm; did you mean 'rmsnorm'?"),
    ],
)
def test_bad_layout_settings_are_config_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        load_config(None, overrides)


def test_qk_norm_that_cannot_take_the_head_width_names_the_key():
    cfg = ModelConfig(preset="llama-tiny", qk_norm=NormConfig(kind="ibnorm", num_groups=3))
    with pytest.raises(ConfigError, match=r"model\.qk_norm \(kind 'ibnorm', width 32\): num_groups=3: must divide"):
        build_model(cfg, 4096)


def test_mix_fraction_too_small_for_the_depth_is_refused():
    cfg = ModelConfig(preset="llama-tiny", norm_placement="mix", mix_ln_fraction=0.2)
    with pytest.raises(ConfigError, match=r"model\.mix_ln_fraction=0\.2: floor\(0\.2 x 4 blocks\) = 0 blocks"):
        build_model(cfg, 4096)


@pytest.mark.parametrize("family", FAMILIES)
def test_placed_blocks_and_qk_hooks_compile_without_graph_breaks(family, make_tiny, tokens):
    # LayerNorm and Derf have no torch.compiler.disable'd fast path, so any break would be ours.
    model = make_tiny(
        family, norm=NormConfig(kind="layernorm"), final_norm=NormConfig(kind="derf"), norm_placement="mix",
        mix_ln_fraction=0.5, norm_scaling="lns", qk_norm=NormConfig(kind="seednorm"),
    )
    with torch.no_grad():
        expected = model(tokens, use_cache=False).logits
        compiled = torch.compile(model, backend="eager", fullgraph=True)(tokens, use_cache=False).logits
    torch.testing.assert_close(compiled, expected, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_fsdp_transformer_wrap_finds_exactly_the_decoder_blocks(family, make_tiny):
    from accelerate.utils.dataclasses import get_module_class_from_name

    # accelerate's TRANSFORMER_BASED_WRAP resolves every name in model._no_split_modules and fails
    # on one that names no module (the stock layer name, once the blocks are our subclasses).
    model = make_tiny(family, norm_placement="peri")
    classes = {get_module_class_from_name(model, name) for name in model._no_split_modules}
    assert None not in classes
    wrapped = [module for module in model.modules() if isinstance(module, tuple(classes))]
    assert wrapped == list(_blocks(model, family))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_deep_copy_uses_its_own_qk_norms(family, make_tiny, perturb, tokens):
    import copy

    model = make_tiny(family, qk_norm=NormConfig(kind="rmsnorm"))
    perturb(model, scale=0.2)
    twin = copy.deepcopy(model)
    with torch.no_grad():
        before = model(tokens).logits
        for name, param in twin.named_parameters():
            if ".q_norm." in name:
                param.mul_(3.0)
        after, twin_logits = model(tokens).logits, twin(tokens).logits
    assert torch.equal(before, after)
    assert (twin_logits - before).abs().max() > 1e-3


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("placement", ["post", "peri", "mix"])
def test_every_placement_stays_causal(family, placement, make_tiny, perturb, tokens):
    model = make_tiny(family, n_layers=4, norm_placement=placement, qk_norm=NormConfig(kind="rmsnorm"))
    perturb(model, scale=0.2)
    changed = tokens.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % 100
    with torch.no_grad():
        before, after = model(tokens).logits, model(changed).logits
    torch.testing.assert_close(after[:, :12], before[:, :12], rtol=0, atol=0)
    assert (after[:, 12:] - before[:, 12:]).abs().max() > 1e-4
