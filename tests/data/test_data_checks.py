import json

import pytest

from ibnorm_llm.data import DataError, check_data_config, check_vocab_size


def test_seq_len_beyond_model_positions_names_both(make_cfg, tokenizer):
    cfg = make_cfg("data.seq_len=1024")
    with pytest.raises(DataError, match=r"data.seq_len=1024 exceeds the model's 512 positions"):
        check_data_config(cfg, tokenizer, max_positions=512)
    check_data_config(make_cfg(), tokenizer, max_positions=512, model_vocab_size=512)


def test_model_vocab_must_match_tokenizer_up_to_padding(tokenizer):
    check_vocab_size(tokenizer, 512)

    class T5Like:  # 32100 tokens, embedding padded to 32128 as the model builder does
        name_or_path = "t5-base"

        def __len__(self):
            return 32100

    check_vocab_size(T5Like(), 32128)
    for wrong in (500, 576):
        with pytest.raises(DataError, match=rf"vocab_size={wrong} does not match the tokenizer .* 512 tokens"):
            check_vocab_size(tokenizer, wrong)


def test_files_checked_before_training(make_cfg, tokenizer, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"content": "x y z"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl row 0: no field 'text'"):
        check_data_config(make_cfg(f"data.files=[{bad}]"), tokenizer, max_positions=512)
    with pytest.raises(DataError, match=r"data.files\[0\]=.*gone.txt.*not found"):
        check_data_config(make_cfg(f"data.files=[{tmp_path / 'gone.txt'}]"), tokenizer, max_positions=512)
    with pytest.raises(DataError, match=r"data.val_tokens=16 gives no validation row"):
        check_data_config(make_cfg("data.val_tokens=16"), tokenizer, max_positions=512)
