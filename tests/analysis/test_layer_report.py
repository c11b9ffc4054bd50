"""Per-layer IB values and norm statistics from a forward pass of tiny LLaMA and GPT-2 models."""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from ibnorm_llm.analysis.capture import capture, gather_tokens, norm_modules, predictable_positions
from ibnorm_llm.analysis.ib import ib_values, target_gram
from ibnorm_llm.analysis.report import analyze_model, layer_report
from ibnorm_llm.config import AnalysisConfig

VOCAB = 128


def tiny_llama(layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64)
    return LlamaForCausalLM(config)


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      bos_token_id=0, eos_token_id=0))


def token_ids(rows: int = 4, length: int = 48) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(3))


CFG = AnalysisConfig(n_tokens=96)


def test_capture_records_block_outputs_at_the_sampled_tokens():
    model = tiny_llama()
    ids = token_ids()
    captured = capture(model, ids, n_tokens=96, seed=0)
    assert len(captured.states) == 3 and all(s.shape == (96, 32) for s in captured.states)
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    # Recompute the sample: the same seed picks the same positions.
    positions = predictable_positions(ids)
    picked = positions[torch.randperm(positions.shape[0], generator=torch.Generator().manual_seed(0))[:96]]
    rows, cols = picked[:, 0], picked[:, 1]
    torch.testing.assert_close(captured.states[0], hidden[0][rows, cols])
    torch.testing.assert_close(captured.states[1], hidden[1][rows, cols])  # block 0 output
    assert torch.equal(captured.targets, ids[rows, cols + 1])
    # hidden_states[-1] is after the final norm; our last state is block 1's raw output (its norm's input).
    torch.testing.assert_close(captured.states[2], captured.norm_inputs["model.norm"])
    assert not torch.allclose(captured.states[2], hidden[2][rows, cols])


@pytest.mark.parametrize("build, names", [
    (tiny_llama, ["model.layers.0.input_layernorm", "model.layers.0.post_attention_layernorm",
                  "model.layers.1.input_layernorm", "model.layers.1.post_attention_layernorm", "model.norm"]),
    (tiny_gpt2, ["transformer.h.0.ln_1", "transformer.h.0.ln_2", "transformer.h.1.ln_1", "transformer.h.1.ln_2",
                 "transformer.ln_f"]),
])
def test_norms_are_found_by_their_hugging_face_names(build, names):
    model = build()
    assert list(norm_modules(model)) == names
    report = analyze_model(model, token_ids(), CFG)
    assert [norm["name"] for norm in report["norms"]] == names
    assert [norm["block"] for norm in report["norms"]] == [0, 0, 1, 1, None]
    for norm in report["norms"]:
        # Stock norms at init standardize each token: unit scale after, whatever the scale before.
        assert norm["after"]["group_scale_avg"] == pytest.approx(1.0, abs=0.05)


def test_layer_report_gives_scalars_and_leaves_the_model_as_it_was():
    model = tiny_gpt2()
    model.train()
    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    scalars = layer_report(model, {"input_ids": token_ids(), "attention_mask": torch.ones(4, 48)}, CFG)
    assert model.training
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks_before
    for block in (0, 1):
        assert scalars[f"analysis/ib/{block}"] == pytest.approx(
            scalars[f"analysis/i_target/{block}"] - scalars[f"analysis/i_previous/{block}"])
    assert "analysis/kurtosis_before/transformer.h.1.ln_2" in scalars
    assert all(isinstance(v, float) for v in scalars.values())


def test_consecutive_residual_states_share_more_than_chance():
    # At init each block adds a small update to the residual stream, so T_{l-1} and T_l are
    # strongly dependent; shuffling one side must lose most of the estimate.
    report = analyze_model(tiny_llama(3), token_ids(8, 48), AnalysisConfig(n_tokens=256))
    for row in report["layers"]:
        assert row["i_previous"] > 2 * row["i_previous_chance"]
        assert 0 <= row["i_target"] <= min(row["entropy"], report["target_entropy"]) + 1e-9


def test_beta_weighs_the_compression_term():
    g = torch.Generator().manual_seed(4)
    states = [torch.randn(64, 8, generator=g) for _ in range(3)]
    y = target_gram(torch.randint(0, 5, (64,), generator=g))
    plain = ib_values(states, y, beta=0.0, chance=False)
    weighted = ib_values(states, y, beta=2.5, chance=False)
    for a, b in zip(plain, weighted, strict=True):
        assert a.ib_value == pytest.approx(a.i_target)
        assert b.ib_value == pytest.approx(b.i_target - 2.5 * b.i_previous)
        assert b.i_target_chance is None


def test_padding_and_ignored_labels_are_never_sampled():
    ids = token_ids(2, 10)
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, 6:] = 0
    labels = ids.clone()
    labels[0, 3] = -100
    positions = predictable_positions({"input_ids": ids, "attention_mask": mask, "labels": labels})
    pairs = {tuple(p) for p in positions.tolist()}
    assert (0, 2) not in pairs  # its target (position 3) is ignored
    assert (1, 5) not in pairs and (1, 4) in pairs  # position 6 is padding
    assert len(pairs) == 9 - 1 + 5


def test_bad_input_gives_clear_errors():
    model = tiny_llama()
    with pytest.raises(ValueError, match="layer index 5 is out of range: the model has 2 decoder blocks"):
        analyze_model(model, token_ids(), CFG, layers=[0, 5])
    with pytest.raises(ValueError, match="192 predictable tokens but the analysis samples n_tokens=1024"):
        analyze_model(model, token_ids(4, 49), AnalysisConfig())
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="block 1 output: .*NaN"):
        analyze_model(model, token_ids(), CFG, with_norms=False)
    with pytest.raises(ValueError, match="no decoder blocks found"):
        analyze_model(torch.nn.Linear(3, 3), token_ids(), CFG)


def test_gather_tokens_concatenates_until_enough():
    batches = [{"input_ids": token_ids(2, 17), "labels": token_ids(2, 17)} for _ in range(5)]
    batch = gather_tokens(batches, n_tokens=40)  # 32 predictable tokens per batch; collects 2 * 40
    assert batch["input_ids"].shape == (6, 17)
    with pytest.raises(ValueError, match="160 predictable tokens but n_tokens=500"):
        gather_tokens(batches, n_tokens=500)
