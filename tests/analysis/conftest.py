import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Eigensolvers on small matrices slow down badly when threads oversubscribe a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Two checkpoint directories laid out as the trainer writes them (HF model, tokenizer,
    config.yaml), llama-tiny shrunk to d_model 32: one with RMSNorm, one with IBNorm-L in 2 groups."""
    from pydoc_data.topics import topics

    from transformers import AutoTokenizer

    from ibnorm_llm.config import load_config, save_config
    from ibnorm_llm.data.tokenizer import ensure_special_tokens, train_sentencepiece
    from ibnorm_llm.models import build_model

    root = tmp_path_factory.mktemp("analysis_ckpts")
    docs = [text for _, text in sorted(topics.items())][:60]  # Python's reference manual prose, instantly available
    corpus = root / "docs.txt"
    corpus.write_text("\n\n".join(docs))
    tokenizer_dir = root / "sp512"
    train_sentencepiece(docs, tokenizer_dir, vocab_size=512, model_type="bpe")
    tokenizer = ensure_special_tokens(AutoTokenizer.from_pretrained(str(tokenizer_dir)))
    common = [
        "data.source=files", f"data.files=[{corpus}]", f"data.cache_dir={root / 'cache'}", "data.seq_len=64",
        "data.val_tokens=1024", "data.val_fraction=0.2", f"tokenizer.name_or_path={tokenizer_dir}",
        "tokenizer.vocab_size=512", "model.preset=llama-tiny", "model.d_model=32", "model.n_layers=2",
        "model.n_heads=2", "model.d_ff=64",
    ]
    paths = []
    for name, norm in (("rms", ["model.norm.kind=rmsnorm"]),
                       ("ibl", ["model.norm.kind=ibnorm", "model.norm.variant=L", "model.norm.num_groups=2"])):
        cfg = load_config(None, common + norm + [f"run_name={name}"])
        torch.manual_seed(0)
        model = build_model(cfg.model, vocab_size=len(tokenizer))
        path = root / name / "checkpoints" / "final"
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)
        save_config(cfg, path / "config.yaml")
        paths.append(path)
    return paths
