"""Checkpoints are self-contained Hugging Face directories: they load with trust_remote_code in a
fresh process where ibnorm_llm cannot be imported, with identical logits and working generate()."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import ibnorm_llm.norms as norms_package
from ibnorm_llm.config import NormConfig, NormOverride
from ibnorm_llm.models import NormGPT2LMHeadModel, NormLlamaForCausalLM, load_model

PROMPT = [[5, 17, 300, 42, 7]]
NEW_TOKENS = 6

# Runs with `python -I` (no PYTHONPATH, no user site, no cwd on sys.path) from an empty folder.
# ibnorm_llm is installed editable into the venv, so block it explicitly before anything runs.
ISOLATED_LOAD = textwrap.dedent(
    """
    import sys
    sys.modules["ibnorm_llm"] = None
    import json, torch
    from transformers import AutoModelForCausalLM

    try:
        import ibnorm_llm  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("ibnorm_llm is importable: the test would prove nothing")
    request = json.loads(sys.argv[1])
    prompt, new_tokens = torch.tensor(request["prompt"]), request["new_tokens"]
    results = {}
    for name, directory in request["directories"].items():
        model = AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True).eval()
        reference = torch.load(f"{directory}/reference.pt")
        with torch.no_grad():
            logits = model(reference["tokens"]).logits
        cached = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, use_cache=True)
        uncached = model.generate(prompt, max_new_tokens=new_tokens, do_sample=False, use_cache=False)
        resaved = directory + "-resaved"
        model.save_pretrained(resaved)  # a remote-code model saves a checkpoint that loads again
        again = AutoModelForCausalLM.from_pretrained(resaved, trust_remote_code=True).eval()
        with torch.no_grad():
            again_logits = again(reference["tokens"]).logits
        norm_modules = {type(m).__module__ for n, m in model.named_modules() if n.endswith(("norm", "ln_1", "ln_f"))}
        results[name] = {
            "max_logit_diff": (logits - reference["logits"]).abs().max().item(),
            "resaved_max_logit_diff": (again_logits - reference["logits"]).abs().max().item(),
            "cached": cached.tolist(),
            "uncached": uncached.tolist(),
            "norm_modules": sorted(norm_modules),
        }
    print("RESULTS" + json.dumps(results))
    """
)


def _load_in_fresh_process(directories: dict[str, str], tmp_path: Path) -> dict:
    """ISOLATED_LOAD on ``directories`` in a fresh ``python -I`` from an empty folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env.update(HF_MODULES_CACHE=str(tmp_path / "hf_modules"), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    empty = tmp_path / "cwd"
    empty.mkdir()
    proc = subprocess.run(
        [sys.executable, "-I", "-c", ISOLATED_LOAD,
         json.dumps({"directories": directories, "prompt": PROMPT, "new_tokens": NEW_TOKENS})],
        cwd=empty, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("RESULTS", 1)[1])


def _save_with_reference(model, directory, tokens):
    model.save_pretrained(directory)
    with torch.no_grad():
        torch.save({"tokens": tokens, "logits": model(tokens).logits}, directory / "reference.pt")
    generated = model.generate(torch.tensor(PROMPT), max_new_tokens=NEW_TOKENS, do_sample=False)
    return generated.tolist()


def test_norm_modules_use_only_relative_imports_remote_code_can_follow():
    # Checkpoints carry a flat copy of ibnorm_llm/norms/; transformers' remote-code loader copies
    # a module's relative imports only when written `from .sibling import name` (one leading
    # dot, a sibling .py file). `from . import x` or `from ..pkg import x` load here but break
    # every checkpoint that uses the norm, and only in a fresh process.
    norms_dir = Path(norms_package.__file__).parent
    for source in sorted(norms_dir.glob("*.py")):
        for line in source.read_text().splitlines():
            match = re.match(r"\s*(?:from\s+(\.\S*)\s+import|import\s+(\.\S*))", line)
            if not match:
                continue
            module = (match.group(1) or match.group(2))[1:]
            assert re.fullmatch(r"[A-Za-z_]\w*", module) and (norms_dir / f"{module}.py").is_file(), (
                f"{source.name}: {line.strip()!r}: write `from .<sibling module> import <name>` "
                "(e.g. `from .cpu_kernel import available`), the only relative form transformers copies "
                "into checkpoints"
            )


@pytest.mark.slow
def test_checkpoint_loads_with_remote_code_where_ibnorm_llm_is_absent(tmp_path, make_tiny, perturb, tokens):
    llama = make_tiny(
        "llama",
        norm=NormConfig(kind="ibnorm", variant="L", learnable_lam=True),
        n_layers=3,
        norm_overrides=(NormOverride(layers="2", norm=NormConfig(kind="rmsnorm")),),
        final_norm=NormConfig(kind="dyt"),
    )
    gpt2 = make_tiny("gpt2", norm=NormConfig(kind="ibnorm", variant="T", num_groups=2))
    expected = {}
    directories = {}
    for name, model in (("llama", llama), ("gpt2", gpt2)):
        perturb(model)  # saved values must differ from a fresh init to prove they were loaded
        directories[name] = str(tmp_path / name)
        expected[name] = _save_with_reference(model, tmp_path / name, tokens)

    saved = sorted(p.name for p in (tmp_path / "llama").iterdir())
    assert {"config.json", "model.safetensors", "modeling_norm_lm.py", "norm_registry.py", "ibnorm.py"} <= set(saved)
    config = json.loads((tmp_path / "llama" / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "modeling_norm_lm.NormLlamaConfig",
        "AutoModelForCausalLM": "modeling_norm_lm.NormLlamaForCausalLM",
    }
    assert [spec["kind"] for spec in config["block_norms"]] == ["ibnorm", "ibnorm", "rmsnorm"]
    # The registry's own source replaced the package's re-export shim (no norm code lives twice in the repo).
    assert (tmp_path / "llama" / "norm_registry.py").read_text() == Path(norms_package.__file__).read_text()

    results = _load_in_fresh_process(directories, tmp_path)
    for name, result in results.items():
        assert result["max_logit_diff"] <= 1e-5, name
        assert result["resaved_max_logit_diff"] <= 1e-5, name
        assert result["cached"] == result["uncached"] == expected[name], name
        assert len(result["cached"][0]) == len(PROMPT[0]) + NEW_TOKENS
        assert all(module.startswith("transformers_modules.") for module in result["norm_modules"]), result


# Every placement, LayerNorm Scaling and a query/key norm, each family (2 blocks: mix puts block 0 in Post-LN).
LAYOUTS = {
    "post": dict(norm_placement="post"),
    "peri-lns": dict(norm_placement="peri", norm_scaling="lns", norm=NormConfig(kind="seednorm")),
    "mix-qk": dict(norm_placement="mix", mix_ln_fraction=0.5, qk_norm=NormConfig(kind="rmsnorm")),
    "pre-lns-qk": dict(norm_scaling="lns", norm=NormConfig(kind="derf"), qk_norm=NormConfig(kind="ibnorm", variant="L")),
    "hybrid-star": dict(norm_placement="hybrid_star", norm=NormConfig(kind="ibnorm", variant="L")),
    "deepnorm": dict(norm_placement="deepnorm"),
}


@pytest.mark.slow
def test_every_layout_loads_with_remote_code_and_generates_with_the_kv_cache(tmp_path, make_tiny, perturb, tokens):
    expected, directories = {}, {}
    for family in ("llama", "gpt2"):
        for layout, fields in LAYOUTS.items():
            name = f"{family}-{layout}"
            model = make_tiny(family, **fields)
            perturb(model, scale=0.2)
            directories[name] = str(tmp_path / name)
            expected[name] = _save_with_reference(model, tmp_path / name, tokens)
    assert (tmp_path / "llama-post" / "norm_blocks.py").is_file()
    results = _load_in_fresh_process(directories, tmp_path)
    assert results.keys() == expected.keys()
    for name, result in results.items():
        # In-package RMSNorm/IBNorm run the compiled CPU operator; the copy loaded without ibnorm_llm has
        # no csrc/ to build it from and runs the formula, so fp32 rounding may differ (never the tokens).
        assert result["max_logit_diff"] <= 1e-4 and result["resaved_max_logit_diff"] <= 1e-4, name
        assert result["cached"] == result["uncached"] == expected[name], name


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints"


@pytest.mark.parametrize(("family", "name", "old_type"), [
    ("llama", "llama_ibnorm_l", "ibnorm_llama"), ("gpt2", "gpt2_layernorm", "ibnorm_gpt2"),
])
def test_checkpoints_saved_before_the_class_rename_still_load(tmp_path, family, name, old_type):
    # tests/test_checkpoint_fixtures.py checks that these compute what they computed when saved.
    directory = FIXTURES / name
    assert json.loads((directory / "config.json").read_text())["model_type"] == old_type
    model = load_model(directory).eval()
    assert type(model) is (NormLlamaForCausalLM if family == "llama" else NormGPT2LMHeadModel)
    assert (model.config.norm_placement, model.config.norm_scaling, model.config.qk_norm) == ("pre", "none", None)
    model.save_pretrained(tmp_path / "resaved")  # re-saved under today's names
    config = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert config["model_type"] == f"norm_{family}"
    assert config["auto_map"]["AutoModelForCausalLM"] == f"modeling_norm_lm.{type(model).__name__}"


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_load_model_uses_package_classes_without_remote_code(tmp_path, family, make_tiny, perturb, tokens):
    model = make_tiny(family, norm=NormConfig(kind="ibnorm", variant="S", lam=2.0, learnable_lam=True))
    perturb(model)
    model.save_pretrained(tmp_path)
    expected_class = NormLlamaForCausalLM if family == "llama" else NormGPT2LMHeadModel
    for loaded in (load_model(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert type(loaded) is expected_class
        assert loaded.config.block_norms == model.config.block_norms
        loaded.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, atol=0, rtol=0)
        for name, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[name], value), name


def test_load_model_names_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json; expected a checkpoint directory"):
        load_model(tmp_path / "nope")
