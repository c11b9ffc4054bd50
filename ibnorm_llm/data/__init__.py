"""Data pipeline: corpora (hub streaming, local files, a built-in offline corpus), tokenizers,
token shards, packing, and resumable training / validation batches.

The trainer uses five functions::

    tokenizer = load_tokenizer(cfg)
    check_data_config(cfg, tokenizer, max_positions, model_vocab_size)
    loader = build_train_loader(cfg, tokenizer, rank=rank, world_size=world_size)
    val_batches = build_val_batches(cfg, tokenizer, rank=rank, world_size=world_size)
    loader.state_dict() / loader.load_state_dict(state)
"""

from ibnorm_llm.data.builtin import builtin_corpus, builtin_corpus_fingerprint
from ibnorm_llm.data.checks import check_data_config, check_vocab_size
from ibnorm_llm.data.corpus import DataError
from ibnorm_llm.data.loader import IGNORE_INDEX, ShardTrainLoader, TrainLoader, build_train_loader, build_val_batches
from ibnorm_llm.data.tokenizer import load_tokenizer, train_tokenizer_dir

__all__ = [
    "IGNORE_INDEX",
    "DataError",
    "ShardTrainLoader",
    "TrainLoader",
    "build_train_loader",
    "build_val_batches",
    "builtin_corpus",
    "builtin_corpus_fingerprint",
    "check_data_config",
    "check_vocab_size",
    "load_tokenizer",
    "train_tokenizer_dir",
]
