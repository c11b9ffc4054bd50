import pytest

from ibnorm_llm.config import ConfigError, TrainConfig
from ibnorm_llm.train.batching import batch_notice, batch_source, plan_batches


def test_accumulation_from_sequences_and_tokens():
    plan = plan_batches(TrainConfig(micro_batch_size=4, global_batch_size=32), seq_len=256, world_size=2)
    assert (plan.grad_accum, plan.global_batch_size, plan.tokens_per_step) == (4, 32, 32 * 256)
    plan = plan_batches(TrainConfig(micro_batch_size=8, global_batch_tokens=524288), seq_len=1024, world_size=8)
    assert plan.grad_accum == 8 and plan.global_batch_size == 512


def test_default_is_one_micro_batch_per_device():
    plan = plan_batches(TrainConfig(micro_batch_size=3), seq_len=64, world_size=2)
    assert (plan.grad_accum, plan.global_batch_size) == (1, 6)


def test_indivisible_batch_names_keys_and_valid_values():
    with pytest.raises(ConfigError, match=r"train.global_batch_size.*train.micro_batch_size=3.*valid"):
        plan_batches(TrainConfig(micro_batch_size=3, global_batch_size=32), seq_len=64, world_size=2)
    with pytest.raises(ConfigError, match=r"train.global_batch_tokens=1000 is not a multiple of data.seq_len=256"):
        plan_batches(TrainConfig(micro_batch_size=1, global_batch_tokens=1000), seq_len=256, world_size=1)


def test_a_global_batch_that_follows_the_process_count_is_announced_and_recorded():
    free = TrainConfig(micro_batch_size=4)
    notice = batch_notice(free, plan_batches(free, 32, 2))
    assert notice.startswith("global batch: 8 sequences (256 tokens) per step = train.micro_batch_size=4 x 2 processes")
    assert "set train.global_batch_size=8 to keep it fixed" in notice
    assert batch_notice(free, plan_batches(free, 32, 1)) is None
    fixed = TrainConfig(micro_batch_size=4, global_batch_size=16)
    assert batch_notice(fixed, plan_batches(fixed, 32, 2)) is None
    assert plan_batches(fixed, 32, 2).global_batch_size == plan_batches(fixed, 32, 4).global_batch_size == 16
    assert batch_source(free) == "train.micro_batch_size x world size" and batch_source(fixed) == "train.global_batch_size"
