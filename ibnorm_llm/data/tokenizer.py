"""Tokenizers: load a hub or local one, or train a SentencePiece model into a Hugging Face directory.

A trained tokenizer directory holds ``tokenizer.model`` (SentencePiece), ``tokenizer.json``,
``tokenizer_config.json`` naming ``LlamaTokenizer`` (so AutoTokenizer never asks about remote
code) and ``ibnorm_tokenizer.json`` recording how it was trained: vocabulary size, algorithm and
the corpus (:func:`training_corpus`). Loading such a folder for a config that asks for another
size, algorithm or corpus is an error, never a silent reuse. Building the directory from a
bare ``LlamaTokenizer(vocab_file=...)`` is NOT used: in transformers 5 that silently yields a
tokenizer that encodes nothing; loading the folder through AutoTokenizer is what works.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ibnorm_llm.config import TokenizerConfig
from ibnorm_llm.data.atomic import build_dir_once
from ibnorm_llm.data.corpus import (
    DataError,
    document_hash,
    local_corpus,
    open_hf_stream,
    resolve_files,
    split_of,
    stream_texts,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from ibnorm_llm.config import DataConfig, RunConfig

PROVENANCE_FILE = "ibnorm_tokenizer.json"
SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
_MAX_SENTENCE_CHARS = 4000  # SentencePiece skips "sentences" over 4192 bytes; cut paragraphs below that
_MAX_SENTENCES = 2_000_000
_TRAINING_ONLY_KEYS = ("vocab_size", "model_type", "train_max_documents")
"""tokenizer.* keys that only shape a tokenizer ibnorm_llm trains."""


def is_local_tokenizer_path(name_or_path: str) -> bool:
    """Local directory or hub name? Local when it exists, starts with '.', '/' or '~', or lies under tokenizers/."""
    path = Path(name_or_path).expanduser()
    return (
        path.exists()
        or name_or_path.startswith((".", "/", "~"))
        or (len(path.parts) > 1 and path.parts[0] == "tokenizers")
    )


def load_tokenizer(cfg: RunConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of ``cfg.tokenizer`` with EOS, pad and BOS defined.

    A hub name is loaded with AutoTokenizer (from the local cache first; offline, a missing one
    is a clear error). A missing local directory is trained there first when
    ``tokenizer.train_if_missing`` (the same code as ``ibnorm-llm tokenizer``); two
    processes doing so at once build it once. An existing directory we trained must match the
    config's vocabulary size, algorithm, corpus and document cap (:func:`check_provenance`); for
    any other tokenizer ``tokenizer.vocab_size``, ``tokenizer.model_type`` and
    ``tokenizer.train_max_documents`` must keep their defaults.
    Tokenizers without a pad token (gpt2) get pad = EOS and those without BOS (t5-base) get
    BOS = EOS; labels mask padding by position, so pad == EOS is safe.
    """
    spec = cfg.tokenizer
    if is_local_tokenizer_path(spec.name_or_path):
        directory = Path(spec.name_or_path).expanduser()
        if not (directory / "tokenizer_config.json").is_file():
            if not spec.train_if_missing:
                raise DataError(
                    f"tokenizer.name_or_path={spec.name_or_path!r}: no tokenizer directory there. Train one with "
                    f"`ibnorm-llm tokenizer --config ... --out {spec.name_or_path}` or set "
                    f"tokenizer.train_if_missing=true"
                )
            train_tokenizer_dir(cfg, directory)
        if (directory / PROVENANCE_FILE).is_file():
            check_provenance(directory, cfg)
        else:
            _reject_training_keys(cfg, f"is a folder without {PROVENANCE_FILE} (not trained by ibnorm_llm)")
        tokenizer = _auto_tokenizer(str(directory), local_only=True)
    else:
        _reject_training_keys(cfg, "is a hub tokenizer")
        tokenizer = _load_hub_tokenizer(spec.name_or_path)
    return ensure_special_tokens(tokenizer)


def _auto_tokenizer(source: str, *, local_only: bool):
    from transformers import AutoTokenizer

    # trust_remote_code=False: never execute hub code, never stop at the interactive prompt.
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False, local_files_only=local_only)
    # from_pretrained records its kwargs for save_pretrained; a checkpoint should not inherit them.
    for key in ("local_files_only", "is_local"):
        tokenizer.init_kwargs.pop(key, None)
    return tokenizer


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def _load_hub_tokenizer(name: str):
    try:
        return _auto_tokenizer(name, local_only=True)
    except OSError:
        pass  # not in the local cache: go to the hub unless offline
    fix = (
        f"download it on a connected machine (`hf download {name}`, then copy the HF cache or "
        f"`save_pretrained` it to a folder) and set tokenizer.name_or_path to that folder, or train one with "
        f"`ibnorm-llm tokenizer`"
    )
    if _hub_offline():
        raise DataError(f"tokenizer.name_or_path={name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE "
                        f"is set: {fix}")
    try:
        return _auto_tokenizer(name, local_only=False)
    except OSError as err:
        raise DataError(f"tokenizer.name_or_path={name!r} could not be loaded ({err}). {fix}") from err


def ensure_special_tokens(tokenizer):
    """Give the tokenizer the EOS, pad and BOS the data pipeline and checkpoints rely on."""
    if tokenizer.eos_token is None:
        raise DataError(
            f"tokenizer {tokenizer.name_or_path!r} has no EOS token; documents are joined with EOS. "
            f"Use a tokenizer with one (or train one with `ibnorm-llm tokenizer`)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.bos_token is None:
        tokenizer.bos_token = tokenizer.eos_token
    return tokenizer


def _reject_training_keys(cfg: RunConfig, what: str) -> None:
    """A tokenizer we did not train ignores the training keys: setting one is an error, not a no-op."""
    defaults = TokenizerConfig()
    changed = [
        f"tokenizer.{key}={getattr(cfg.tokenizer, key)}"
        for key in _TRAINING_ONLY_KEYS
        if getattr(cfg.tokenizer, key) != getattr(defaults, key)
    ]
    if changed:
        verb, pronoun = ("applies", "it") if len(changed) == 1 else ("apply", "them")
        raise DataError(
            f"{' and '.join(changed)} only {verb} to tokenizers trained by ibnorm_llm, but "
            f"tokenizer.name_or_path={cfg.tokenizer.name_or_path!r} {what}. Remove {pronoun} from the config (its "
            f"own vocabulary is used), or point tokenizer.name_or_path at a new folder to train a tokenizer there"
        )


def check_provenance(directory: Path, cfg: RunConfig) -> None:
    """Raise DataError unless the tokenizer we trained in ``directory`` fits ``cfg``: same
    tokenizer.vocab_size, tokenizer.model_type, corpus (:func:`training_corpus`) and, where the
    folder records it, tokenizer.train_max_documents."""
    name = cfg.tokenizer.name_or_path
    path = Path(directory) / PROVENANCE_FILE
    try:
        trained = json.loads(path.read_text())
        trained_size, trained_type = trained["vocab_size"], trained["model_type"]
        if not isinstance(trained.get("corpus", {}), dict):
            raise TypeError(f"'corpus' is {trained['corpus']!r}, not an object")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DataError(
            f"tokenizer.name_or_path={name!r}: {path} is unreadable ({type(err).__name__}: {err}); "
            f"delete {directory} to retrain it"
        ) from None
    if trained_size != cfg.tokenizer.vocab_size or trained_type != cfg.tokenizer.model_type:
        raise DataError(
            f"tokenizer.name_or_path={name!r} was trained with vocab_size={trained_size}, "
            f"model_type={trained_type} but the config asks for tokenizer.vocab_size={cfg.tokenizer.vocab_size}, "
            f"tokenizer.model_type={cfg.tokenizer.model_type}: point tokenizer.name_or_path at a new folder "
            f"(it is trained there) or match the config to it"
        )
    _check_trained_corpus(trained, Path(directory), cfg)
    trained_documents = trained.get("max_documents")  # not recorded by train_sentencepiece on chosen documents
    if trained_documents is not None and trained_documents != cfg.tokenizer.train_max_documents:
        raise DataError(
            f"tokenizer.name_or_path={name!r} was trained on at most {trained_documents} documents but the config "
            f"asks for tokenizer.train_max_documents={cfg.tokenizer.train_max_documents}: point "
            f"tokenizer.name_or_path at a new folder (it is trained there) or match the config to it"
        )


def _check_trained_corpus(trained: dict, directory: Path, cfg: RunConfig) -> None:
    recorded = trained.get("corpus")
    if recorded is None:
        # train_sentencepiece on documents a caller chose records no corpus; folders from before
        # corpus records hold only the source: check what the file has.
        if trained.get("source") in (None, cfg.data.source):
            return
        recorded = {"description": f"the {trained['source']} corpus", "fingerprint": None}
    configured = training_corpus(cfg.data)
    if recorded.get("fingerprint") == configured["fingerprint"]:
        return
    same_name = recorded.get("description") == configured["description"]
    changed = (" (the same source, but its content changed since: file sizes or modification times, or the Python "
               "installation for the built-in corpus)") if same_name else ""
    raise DataError(
        f"tokenizer.name_or_path={cfg.tokenizer.name_or_path!r} was trained on {_corpus_text(recorded)} but the "
        f"configured corpus is {_corpus_text(configured)}{changed}. Set tokenizer.name_or_path to another folder "
        f"(a missing one is trained there on this corpus), or delete {directory} to retrain it"
    )


def _corpus_text(corpus: dict) -> str:
    fingerprint = corpus.get("fingerprint")
    suffix = f" [fingerprint {fingerprint[:12]}]" if fingerprint else ""
    return f"{corpus.get('description', 'an unrecorded corpus')}{suffix}"


def training_corpus(data: DataConfig) -> dict[str, str]:
    """Which corpus a tokenizer trained on ``data`` learns from: ``source``, ``description``, ``fingerprint``.

    The fingerprint identifies the corpus: for builtin the built-in corpus fingerprint, for files
    the token-shard cache's (resolved paths, sizes and modification times of the sorted files,
    text field, txt sampling), for hf the dataset name, config, train split and text field.
    """
    if data.source == "hf":
        settings = {"hf_name": data.hf_name, "hf_config": data.hf_config, "split": data.train_split,
                    "text_field": data.text_field}
        fingerprint = hashlib.sha256(json.dumps(["hf-v1", settings], sort_keys=True).encode()).hexdigest()
        description = (f"hf dataset {data.hf_name} (config {data.hf_config}, split {data.train_split}, "
                       f"field {data.text_field})")
    else:
        fingerprint = local_corpus(data).fingerprint
        description = "the built-in corpus" if data.source == "builtin" else _files_description(data)
    return {"source": data.source, "description": description, "fingerprint": fingerprint}


def _files_description(data: DataConfig, shown: int = 3) -> str:
    paths = [str(path) for path in resolve_files(data)]
    listed = ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")
    return f"files {listed} (text_field {data.text_field}, txt_sample_by {data.txt_sample_by})"


# --------------------------------------------------------------------------------------
# Training


def training_documents(cfg: RunConfig) -> Iterator[str]:
    """The documents a tokenizer is trained on: the configured corpus, train split, capped in count."""
    data = cfg.data
    carved_val = data.source != "hf" or data.val_split is None
    val_fraction = data.val_fraction if carved_val else 0.0
    if data.source == "hf":
        texts: Iterable[str] = stream_texts(open_hf_stream(data, data.train_split), data.text_field, data.hf_name)
    else:
        texts = local_corpus(data).documents()
    count = 0
    for text in texts:
        if (carved_val or data.test_fraction > 0) and split_of(
            document_hash(text), val_fraction, data.test_fraction
        ) != "train":
            continue  # the tokenizer never sees held-out (validation or test) text either
        yield text
        count += 1
        if count >= cfg.tokenizer.train_max_documents:
            return


def _sentences(documents: Iterable[str]) -> Iterator[str]:
    # SentencePiece is line-oriented: feed paragraphs, cut below its sentence-length limit.
    for document in documents:
        for paragraph in document.split("\n\n"):
            paragraph = paragraph.strip("\n")
            for start in range(0, len(paragraph), _MAX_SENTENCE_CHARS):
                piece = paragraph[start : start + _MAX_SENTENCE_CHARS]
                if piece.strip():
                    yield piece


def train_sentencepiece(documents: Iterable[str], out_dir: Path, *, vocab_size: int, model_type: str,
                        seed: int = 0, extra_provenance: dict | None = None) -> None:
    """Train SentencePiece on ``documents`` and write a Hugging Face tokenizer directory to ``out_dir``.

    Ids: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS), 3 <pad>. Byte fallback keeps every string encodable,
    and the identity normalization keeps whitespace and newlines, so decode(encode(x)) == x.
    The tokenizer adds no special tokens by default: training rows are documents joined by EOS.
    """
    import sentencepiece as spm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(documents),
            model_writer=model,
            vocab_size=vocab_size,
            model_type=model_type,
            unk_id=0, bos_id=1, eos_id=2, pad_id=3,
            byte_fallback=True,
            character_coverage=0.9995,
            normalization_rule_name="identity",
            remove_extra_whitespaces=False,
            allow_whitespace_only_pieces=True,
            split_digits=True,
            input_sentence_size=_MAX_SENTENCES,
            shuffle_input_sentence=True,
            num_threads=os.cpu_count() or 1,
            minloglevel=2,
        )
    except RuntimeError as err:
        raise DataError(f"SentencePiece training failed with tokenizer.vocab_size={vocab_size}, "
                        f"tokenizer.model_type={model_type}: {err}") from err
    (out_dir / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        **SPECIAL_TOKENS,
        "add_bos_token": False,
        "add_eos_token": False,
        "legacy": False,
        "model_max_length": 1_000_000_000,
        "clean_up_tokenization_spaces": False,
    }
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    # Round-trip through AutoTokenizer once so the folder also carries tokenizer.json.
    tokenizer = _auto_tokenizer(str(out_dir), local_only=True)
    if len(tokenizer) != vocab_size or not tokenizer("a b c", add_special_tokens=False)["input_ids"]:
        raise DataError(f"the trained tokenizer in {out_dir} does not load correctly (size {len(tokenizer)})")
    tokenizer.save_pretrained(str(out_dir))
    provenance = {"vocab_size": vocab_size, "model_type": model_type, "seed": seed, **(extra_provenance or {})}
    (out_dir / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2))


def train_tokenizer_dir(cfg: RunConfig, out_dir: Path, *, force: bool = False) -> bool:
    """Train a tokenizer for ``cfg`` into ``out_dir`` atomically (once, even with 2 processes). True if built.

    Without ``force`` an existing tokenizer folder is kept; with it, it is replaced.
    """
    spec = cfg.tokenizer
    corpus = training_corpus(cfg.data)  # before reading: what was read is what gets recorded

    def build(tmp: Path) -> None:
        train_sentencepiece(
            training_documents(cfg), tmp, vocab_size=spec.vocab_size, model_type=spec.model_type,
            seed=cfg.data.shuffle_seed,
            extra_provenance={"source": cfg.data.source, "corpus": corpus, "max_documents": spec.train_max_documents},
        )

    def is_complete(path: Path) -> bool:
        return not force and (path / "tokenizer_config.json").is_file()

    return build_dir_once(Path(out_dir), build, is_complete)


def encode_texts(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens.

    Fast tokenizers go straight to the Rust backend: batched in parallel, and safe to call from a
    background thread while the main thread uses the tokenizer (the Python wrapper reconfigures
    truncation/padding on every call, which fails across threads with "Already borrowed").
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]


def tokenizer_fingerprint(tokenizer) -> str:
    """SHA-256 identifying what the tokenizer does: its full serialized model and special tokens."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        digest.update(backend.to_str().encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    specials = {name: getattr(tokenizer, f"{name}_id", None) for name in ("bos_token", "eos_token", "pad_token")}
    digest.update(json.dumps(specials, sort_keys=True).encode())
    return digest.hexdigest()
