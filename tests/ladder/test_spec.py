"""Bad ladder files: each mistake is refused before anything runs, with a message naming the key and the fix."""

from __future__ import annotations

import re

import pytest
from ladder_helpers import ladder_dict

from ibnorm_llm.ladder.plan import build_ladder_plan
from ibnorm_llm.ladder.spec import DEFAULT_TARGETS, LadderError, load_ladder, parse_ladder

SIZES = ladder_dict()["sizes"]


def without(key):
    data = ladder_dict()
    del data[key]
    return data


def sizes_with(**changes):
    return {**SIZES, **changes}


CASES = [
    # (what is wrong, the file, words of the message)
    ("unknown key", ladder_dict(budget=[1, 2]), "unknown key 'budget'; did you mean 'budgets'?"),
    ("a study key a ladder does not take", ladder_dict(eval={"suite": "small"}),
     "'eval' is a study file's key that a ladder does not take; remove it"),
    ("missing budgets", without("budgets"), "missing key 'budgets'"),
    ("budgets not increasing", ladder_dict(budgets=[5, 20, 10]),
     "budgets=[5, 20, 10] must increase (10 follows 20); list them from the smallest"),
    ("a single budget", ladder_dict(budgets=[5]), "budgets=[5] must be a list of at least 2 positive numbers"),
    ("fewer than 3 sizes", ladder_dict(sizes={"a": SIZES["a"], "b": SIZES["b"]}),
     "sizes has 2 size(s); a ladder needs at least 3"),
    ("a size setting the norm", ladder_dict(sizes=sizes_with(c={"model.norm.kind": "rmsnorm"})),
     "sizes.c.model.norm.kind: a size sets the model's shape"),
    ("a size setting the learning rate", ladder_dict(sizes=sizes_with(c={"optim.lr": 0.1})),
     "sizes.c.optim.lr: a size sets the model's shape"),
    ("an unknown target preset", ladder_dict(targets=["llama-70m"]),
     "targets: 'llama-70m' is not a model preset; did you mean 'llama-60m'?"),
    ("an unknown lr rule", ladder_dict(lr_rule={"kind": "sqrt"}), "lr_rule.kind='sqrt' must be one of power, tune_each"),
    ("a power rule without its key tuned", ladder_dict(tune={"model.norm.lam": [2.0, 4.0]}),
     "lr_rule.kind=power transfers the tuned value of optim.lr, but tune has no optim.lr"),
    ("a schedule other than wsd", ladder_dict(overrides={"optim.schedule": "cosine"}),
     "overrides sets optim.schedule=cosine; a ladder trains on wsd"),
    ("a baseline that is not an arm (the study's check)", ladder_dict(baseline="layernorm"),
     "baseline='layernorm' is not one of the arms"),
]


@pytest.mark.parametrize("case, data, message", CASES, ids=[c[0] for c in CASES])
def test_bad_ladder_files_name_the_key_and_the_fix(case, data, message):
    with pytest.raises(LadderError if "study" not in case else ValueError, match=re.escape(message)):
        parse_ladder(data, "ladder.yaml")


PLAN_CASES = [
    ("a size that does not build", ladder_dict(sizes=sizes_with(c={"model.d_model": 30, "model.n_heads": 4})),
     "sizes.c (arm rmsnorm) does not build (model.n_heads=4: must divide model.d_model=30); fix its shape"),
    ("two sizes of the same N", ladder_dict(sizes=sizes_with(c=SIZES["b"])), "sizes.b and sizes.c have the same"),
    ("no fixed global batch", ladder_dict(overrides={}), "set train.global_batch_size"),
    ("budgets that round to the same steps", ladder_dict(budgets=[0.25, 0.26]),
     "budgets 0.25 and 0.26 round to the same steps"),
    ("a target of another family", ladder_dict(targets=["gpt2-124m"]),
     "targets: gpt2-124m is a gpt2 model but the ladder trains llama models"),
]


@pytest.mark.parametrize("case, data, message", PLAN_CASES, ids=[c[0] for c in PLAN_CASES])
def test_ladders_that_cannot_be_planned_are_refused_before_anything_runs(case, data, message, tmp_path):
    spec = parse_ladder(data, "ladder.yaml")
    with pytest.raises(LadderError, match=re.escape(message)):
        build_ladder_plan(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_defaults_and_the_shipped_ladders_read():
    data = ladder_dict()
    del data["targets"], data["lr_rule"]
    spec = parse_ladder(data)
    assert spec.targets == DEFAULT_TARGETS and spec.target_tokens_per_param == 20
    assert spec.lr_rule.kind == "power" and spec.lr_rule.exponent == pytest.approx(-1 / 3)
    assert spec.study.overrides["optim.schedule"] == "wsd"
    for name in ("tiny_norms", "llama_norms"):
        shipped = load_ladder(name)  # found by name among the shipped ladders
        assert len(shipped.sizes) >= 4 and len(shipped.budgets) >= 3
        assert set(shipped.study.arms) == {"rmsnorm", "ibnorm_l", "ibnorm_t"}
    with pytest.raises(LadderError, match="ladder file 'tiny_norm' not found .* Did you mean: tiny_norms.yaml"):
        load_ladder("tiny_norm")
