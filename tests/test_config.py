"""The config system: strict keys and types, dotted overrides, YAML round trip, helpful errors."""

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml

from ibnorm_llm.config import (
    ConfigError,
    NormConfig,
    RunConfig,
    config_to_yaml,
    load_config,
    parse_override,
    replace,
    save_config,
)
from ibnorm_llm.norms import NORM_OPTIONS, NORMS, NormOptionError, NormOptions, NormSpec, build_norm, resolve_options
from ibnorm_llm.norms.ibnorm import DEFAULT_DEVIATION, DEFAULT_LAM_ROLE


def write_yaml(tmp_path, tree, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return path


def test_defaults_load_without_a_file():
    cfg = load_config()
    assert isinstance(cfg, RunConfig)
    assert cfg.out_dir == "runs"
    assert cfg.run_dir.as_posix() == "runs/run"


def test_yaml_then_overrides_take_precedence(tmp_path):
    path = write_yaml(tmp_path, {"run_name": "a", "train": {"max_steps": 10, "seed": 3}})
    cfg = load_config(path, ["train.max_steps=20", "model.norm.kind=ibnorm", "model.norm.lam=2.5"])
    assert cfg.run_name == "a"
    assert cfg.train.max_steps == 20
    assert cfg.train.seed == 3
    assert cfg.model.norm.kind == "ibnorm"
    assert cfg.model.norm.lam == 2.5


def test_unknown_key_names_the_dotted_key_and_suggests(tmp_path):
    path = write_yaml(tmp_path, {"train": {"max_step": 10}})
    with pytest.raises(ConfigError, match=r"train\.max_step.*did you mean 'train\.max_steps'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"model\.norm\.lamda.*did you mean 'model\.norm\.lam'"):
        load_config(None, ["model.norm.lamda=3"])


def test_wrong_types_are_errors_with_the_key():
    with pytest.raises(ConfigError, match=r"train\.max_steps='ten': expected an integer"):
        load_config(None, ["train.max_steps=ten"])
    with pytest.raises(ConfigError, match=r"train\.skip_nonfinite=1: expected true or false"):
        load_config(None, ["train.skip_nonfinite=1"])
    with pytest.raises(ConfigError, match=r"data\.packing='zip': must be one of concat, pad"):
        load_config(None, ["data.packing=zip"])
    with pytest.raises(ConfigError, match=r"optim\.lr=nan"):
        load_config(None, ["optim.lr=.nan"])


def test_invalid_values_are_errors_with_the_key():
    with pytest.raises(ConfigError, match=r"train\.max_steps=0: must be a positive integer"):
        load_config(None, ["train.max_steps=0"])
    with pytest.raises(ConfigError, match=r"optim\.lr=-0\.1"):
        load_config(None, ["optim.lr=-0.1"])
    with pytest.raises(ConfigError, match="set only one"):
        load_config(None, ["train.global_batch_size=8", "train.global_batch_tokens=2048"])
    with pytest.raises(ConfigError, match=r"run_name"):
        load_config(None, ["run_name=a/b"])


def test_norm_options_are_validated_against_the_norm():
    with pytest.raises(ConfigError, match=r"model\.norm"):
        load_config(None, ["model.norm.kind=rmsnorm", "model.norm.lam=4"])
    with pytest.raises(ConfigError, match=r"model\.norm"):
        load_config(None, ["model.norm.kind=ibnorm", "model.norm.lam=-1"])
    with pytest.raises(ConfigError, match=r"model\.norm"):
        load_config(None, ["model.norm.kind=ibnorm", "model.norm.variant=Q"])
    with pytest.raises(ConfigError, match=r"model\.norm"):
        load_config(None, ["model.norm.kind=ibnrom"])


def test_layer_dependent_norms(tmp_path):
    path = write_yaml(
        tmp_path,
        {
            "model": {
                "norm": {"kind": "rmsnorm"},
                "norm_overrides": [{"layers": "0-1", "norm": {"kind": "ibnorm", "variant": "L", "lam": 4}}],
            }
        },
    )
    cfg = load_config(path)
    assert [cfg.model.norm_for_block(i).kind for i in range(4)] == ["ibnorm", "ibnorm", "rmsnorm", "rmsnorm"]
    with pytest.raises(ConfigError, match="layers"):
        load_config(None, ["model.norm_overrides=[{layers: '3-1', norm: {kind: rmsnorm}}]"])


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config(None, ["model.norm.kind=ibnorm", "model.norm.variant=T", "optim.betas=[0.9, 0.99]"])
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert load_config(path) == cfg
    assert "variant: T" in config_to_yaml(cfg)


def test_bare_config_names_are_looked_up_in_configs_dir():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config_anywhere.yaml")


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_override("train.max_steps")
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


def test_replace_revalidates():
    cfg = load_config()
    assert replace(cfg, "train.seed", 7).train.seed == 7
    with pytest.raises(ConfigError):
        replace(cfg, "train.seed", "x")
    assert NormConfig(kind="rmsnorm", eps=1e-6).options() == {"eps": 1e-6}


def test_command_line_values_follow_yaml_1_2():
    # YAML 1.1 would read `off` as false and `3e-3` as a string: both are what users type.
    cfg = load_config(None, ["logging.wandb=off", "optim.lr=3e-3", "train.peak_flops=1.0e12", "train.max_steps=1e3"])
    assert cfg.logging.wandb == "off"
    assert cfg.optim.lr == 0.003
    assert cfg.train.peak_flops == 1e12
    assert cfg.train.max_steps == 1000
    with pytest.raises(ConfigError, match=r"train\.skip_nonfinite='yes': expected true or false"):
        load_config(None, ["train.skip_nonfinite=yes"])


def test_source_specific_data_keys_need_their_source():
    # data.files without data.source=files would otherwise train on the built-in corpus.
    with pytest.raises(ConfigError, match=r"data\.files is set but data\.source=builtin.*set data\.source=files"):
        load_config(None, ["data.files=[corpus.jsonl]"])
    with pytest.raises(ConfigError, match=r"data\.hf_name is set but data\.source=files"):
        load_config(None, ["data.source=files", "data.files=[a.txt]", "data.hf_name=foo/bar"])
    assert load_config(None, ["data.source=hf", "data.hf_name=foo/bar"]).data.hf_name == "foo/bar"


def test_open_ended_layer_range_is_an_error():
    with pytest.raises(ConfigError, match="layers='5-'"):
        load_config(None, ["model.norm_overrides=[{layers: '5-', norm: {kind: rmsnorm}}]"])


@dataclass(frozen=True, kw_only=True)
class _ScaledNormOptions(NormOptions):
    """The options of a norm the config module has never heard of."""

    kind: ClassVar[str] = "scalednorm"
    scale: float = 1.0
    centered: bool = False

    def _checks(self) -> dict:
        if not self.scale > 0:
            raise NormOptionError("scale", self.scale, "must be > 0")
        return {"scale": float(self.scale), "centered": self.centered}


class _ScaledNorm(torch.nn.Module):
    Options = _ScaledNormOptions

    def __init__(self, dim: int, **options) -> None:
        super().__init__()
        resolved = resolve_options(self.Options.kind, options, dim)
        self.scale, self.centered = resolved.scale, resolved.centered


def test_a_newly_registered_norm_is_configurable_without_touching_the_config(monkeypatch):
    monkeypatch.setitem(NORM_OPTIONS, "scalednorm", _ScaledNormOptions)
    monkeypatch.setitem(NORMS, "scalednorm", _ScaledNorm)
    assert build_norm("scalednorm", 4, scale=3).scale == 3.0
    cfg = load_config(None, ["model.norm={kind: scalednorm, scale: 2}", "model.final_norm.kind=rmsnorm"])
    assert cfg.model.norm == NormSpec("scalednorm", scale=2.0)
    assert isinstance(cfg.model.norm.scale, float)  # converted by the options field's annotation
    assert cfg.model.norm.lam is None  # another norm's option reads as unset
    assert load_config(None, [f"model.norm={cfg.model.norm.to_dict()}"]).model.norm == cfg.model.norm
    with pytest.raises(ConfigError, match=r"^model\.norm\.centered='yes': expected true or false$"):
        load_config(None, ["model.norm={kind: scalednorm, centered: 'yes'}"])
    with pytest.raises(ConfigError, match=r"^model\.norm\.scale=0\.0: must be > 0$"):
        load_config(None, ["model.norm={kind: scalednorm, scale: 0}"])
    with pytest.raises(ConfigError, match=r"^unknown config key 'model\.norm\.scal'; did you mean 'model\.norm\.scale'\?$"):
        load_config(None, ["model.norm={kind: scalednorm, scal: 2}"])
    with pytest.raises(ConfigError, match=r"^model\.norm\.scale: kind 'rmsnorm' does not take option 'scale'"):
        load_config(None, ["model.norm.scale=2"])


def test_norm_spec_is_one_immutable_value():
    spec = NormSpec("ibnorm", variant="L", lam=4.0, eps=None)
    # IBNorm's reading (deviation units, lambda's role) is always written out, defaults included.
    reading = {"deviation": DEFAULT_DEVIATION, "lam_role": DEFAULT_LAM_ROLE}
    assert spec.options() == {"variant": "L", "lam": 4.0, **reading}
    assert spec.to_dict() == {"kind": "ibnorm", **spec.options()}
    assert NormSpec("rmsnorm", eps=None).options() == {}
    assert spec == NormSpec("ibnorm", lam=4.0, variant="L") and len({spec, NormSpec("ibnorm", lam=4.0, variant="L")}) == 1
    assert pickle.loads(pickle.dumps(spec)) == spec
    with pytest.raises(AttributeError, match="immutable"):
        spec.lam = 2.0
    with pytest.raises(AttributeError, match="no attribute 'lamda'"):
        _ = spec.lamda


def test_config_yaml_of_older_runs_lists_every_option_and_still_loads(tmp_path):
    # config.yaml written before norm specs: every option of every norm, unset ones as null.
    old = load_config(Path(__file__).parent / "fixtures" / "checkpoints" / "llama_ibnorm_l" / "config.yaml")
    assert old.model.norm == NormSpec("ibnorm", variant="L", lam=4.0)
    # the norm spec lists only IBNorm's options (model.alpha_init, the DyT/Derf alpha by position, is a model key)
    norm_yaml = yaml.safe_load(config_to_yaml(old))["model"]["norm"]
    assert "alpha_init" not in norm_yaml and norm_yaml["kind"] == "ibnorm"


def test_bare_config_name_is_looked_up_in_dot_configs_before_the_shipped_presets(tmp_path, monkeypatch):
    from ibnorm_llm.config import CONFIG_DIR, resolve_config_path

    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("llama_tiny_rmsnorm") == CONFIG_DIR / "llama_tiny_rmsnorm.yaml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "llama_tiny_rmsnorm.yaml").write_text("run_name: my_copy\n")
    assert load_config("llama_tiny_rmsnorm").run_name == "my_copy"  # ./configs wins
    (tmp_path / "llama_tiny_rmsnorm.yaml").write_text("run_name: here\n")
    assert load_config("llama_tiny_rmsnorm.yaml").run_name == "here"  # a path as given wins over both
    with pytest.raises(ConfigError, match=r"config 'nope' not found \(looked for ./nope, ./configs/ and the shipped "):
        load_config("nope")
    with pytest.raises(ConfigError, match="Did you mean: llama_tiny_rmsnorm.yaml"):
        load_config("llama_tiny_rmsnrom")


def test_deepspeed_cpu_notice_is_silenced():
    import subprocess
    import sys

    code = ("import ibnorm_llm\nfrom deepspeed.accelerator import real_accelerator as r\nr.ds_accelerator = None\n"
            "print(r.get_accelerator()._name)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    assert "Setting accelerator to CPU" not in proc.stdout + proc.stderr
