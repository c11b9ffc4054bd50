import json
import os
import shutil
import threading

import pytest
from transformers import AutoTokenizer

from ibnorm_llm.cli import run_command
from ibnorm_llm.config import load_config
from ibnorm_llm.data import DataError, builtin_corpus_fingerprint, load_tokenizer
from ibnorm_llm.data.atomic import build_dir_once
from ibnorm_llm.data.tokenizer import (
    PROVENANCE_FILE,
    encode_texts,
    is_local_tokenizer_path,
    tokenizer_fingerprint,
    training_corpus,
)

SAMPLES = [
    "The assert statement is a convenient way to insert debugging assertions.",
    "Indented  code:\n\n    x = {'a': 1}  # two  spaces\n",
    "Unicode: é, ß, 漢字, ∑ and emoji 🙂 survive byte fallback.",
]


def test_trained_tokenizer_loads_with_autotokenizer_and_round_trips(tokenizer_dir):
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "LlamaTokenizer"  # AutoTokenizer never asks about remote code
    assert "local_files_only" not in config
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert len(tok) == 512
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (0, 1, 2, 3)
    for text in SAMPLES:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert len(ids) > 5
        assert tok.decode(ids) == text
    # A real vocabulary, not bytes only: common words are single tokens or close to it.
    assert len(tok("the the the the", add_special_tokens=False)["input_ids"]) <= 8


def test_encode_texts_matches_the_tokenizer_call(tokenizer):
    assert encode_texts(tokenizer, SAMPLES) == tokenizer(SAMPLES, add_special_tokens=False)["input_ids"]


def test_load_tokenizer_trains_a_missing_local_dir_once(tmp_path, corpus_file):
    corpus = tmp_path / "docs.jsonl"
    shutil.copy(corpus_file, corpus)  # its modification time is changed below
    out = tmp_path / "tokenizers" / "sp"
    trained_with = [f"tokenizer.name_or_path={out}", "tokenizer.vocab_size=400", "tokenizer.model_type=unigram"]
    cfg = load_config(None, ["data.source=files", f"data.files=[{corpus}]", *trained_with,
                             "tokenizer.train_max_documents=120"])
    tok = load_tokenizer(cfg)
    assert len(tok) == 400 and tok.eos_token_id == 2 and tok.pad_token_id == 3
    assert tok.decode(tok(SAMPLES[0], add_special_tokens=False)["input_ids"]) == SAMPLES[0]
    provenance = json.loads((out / "ibnorm_tokenizer.json").read_text())
    assert provenance["model_type"] == "unigram" and provenance["max_documents"] == 120
    assert provenance["corpus"] == training_corpus(cfg.data) and provenance["corpus"]["source"] == "files"
    stamp = (out / "tokenizer.model").stat().st_mtime_ns
    again = load_tokenizer(cfg)  # reused, not retrained
    assert (out / "tokenizer.model").stat().st_mtime_ns == stamp
    assert tokenizer_fingerprint(again) == tokenizer_fingerprint(tok)
    # Asking for another document cap than the folder was trained with is refused too.
    with pytest.raises(DataError, match="at most 120 documents but the config asks for tokenizer.train_max_documents=121"):
        load_tokenizer(load_config(None, ["data.source=files", f"data.files=[{corpus}]", *trained_with,
                                          "tokenizer.train_max_documents=121"]))
    # Asking for another size than the folder was trained with is an error, not a silent reuse.
    with pytest.raises(DataError, match="tokenizer.vocab_size=480"):
        load_tokenizer(load_config(None, [f"tokenizer.name_or_path={out}", "tokenizer.vocab_size=480",
                                          "tokenizer.model_type=unigram"]))
    # So is another corpus: the default built-in one, a hub dataset, or the same file edited since.
    for other, configured in [([], "the built-in corpus"), (["data.source=hf", "data.hf_name=some/dataset"],
                                                             "hf dataset some/dataset")]:
        with pytest.raises(DataError) as err:
            load_tokenizer(load_config(None, [*other, *trained_with]))
        message = str(err.value)
        assert f"tokenizer.name_or_path='{out}' was trained on files {corpus} (text_field text" in message
        assert f"the configured corpus is {configured}" in message
        assert "Set tokenizer.name_or_path to another folder" in message and f"delete {out} to retrain" in message
    os.utime(corpus, ns=(stamp, stamp + 10**9))
    with pytest.raises(DataError, match=r"the same source, but its content changed since"):
        load_tokenizer(cfg)
    assert (out / "tokenizer.model").stat().st_mtime_ns == stamp  # refused, never retrained behind the user's back


def test_training_corpus_identifies_source_and_settings(tmp_path, corpus_file):
    files = ["data.source=files", f"data.files=[{corpus_file}]"]
    base = training_corpus(load_config(None, files).data)
    assert base == training_corpus(load_config(None, files).data)
    assert base["fingerprint"] != training_corpus(load_config(None, [*files, "data.text_field=id"]).data)["fingerprint"]
    builtin = training_corpus(load_config(None, []).data)
    assert builtin["source"] == "builtin" and builtin["fingerprint"] == builtin_corpus_fingerprint()
    hf = ["data.source=hf", "data.hf_name=allenai/c4"]
    c4 = training_corpus(load_config(None, hf).data)
    assert c4["description"] == "hf dataset allenai/c4 (config en, split train, field text)"
    for change in ("data.hf_config=realnewslike", "data.train_split=validation", "data.hf_name=other/c4"):
        assert training_corpus(load_config(None, [*hf, change]).data)["fingerprint"] != c4["fingerprint"]


def _copy_with_provenance(tokenizer_dir, target, provenance):
    shutil.copytree(tokenizer_dir, target)
    path = target / PROVENANCE_FILE
    if provenance is None:
        path.unlink()
    else:
        path.write_text(provenance if isinstance(provenance, str) else json.dumps(provenance))
    return target


def test_provenance_without_corpus_record_checks_its_source(tmp_path, tokenizer_dir, corpus_file):
    """Folders trained before corpus records name only the source; that much is still checked."""
    legacy = _copy_with_provenance(tokenizer_dir, tmp_path / "legacy",
                                   {"vocab_size": 512, "model_type": "bpe", "seed": 42, "source": "builtin"})
    on_builtin = [f"tokenizer.name_or_path={legacy}", "tokenizer.vocab_size=512"]
    assert len(load_tokenizer(load_config(None, on_builtin))) == 512
    with pytest.raises(DataError, match=r"was trained on the builtin corpus but the configured corpus is files"):
        load_tokenizer(load_config(None, [*on_builtin, "data.source=files", f"data.files=[{corpus_file}]"]))


def test_unreadable_provenance_is_a_clear_error(tmp_path, tokenizer_dir):
    broken = _copy_with_provenance(tokenizer_dir, tmp_path / "broken", "{not json")
    with pytest.raises(DataError, match=rf"{PROVENANCE_FILE} is unreadable .* delete {broken} to retrain"):
        load_tokenizer(load_config(None, [f"tokenizer.name_or_path={broken}", "tokenizer.vocab_size=512"]))


@pytest.mark.parametrize("setting", ["tokenizer.vocab_size=512", "tokenizer.model_type=unigram",
                                     "tokenizer.train_max_documents=100"])
def test_training_keys_are_refused_for_tokenizers_we_did_not_train(tmp_path, tokenizer_dir, setting):
    foreign = _copy_with_provenance(tokenizer_dir, tmp_path / "foreign", None)
    assert len(load_tokenizer(load_config(None, [f"tokenizer.name_or_path={foreign}"]))) == 512  # defaults: fine
    with pytest.raises(DataError, match=rf"{setting} only applies to tokenizers trained by ibnorm_llm, "
                                        rf"but tokenizer.name_or_path='{foreign}' is a folder without"):
        load_tokenizer(load_config(None, [f"tokenizer.name_or_path={foreign}", setting]))
    # A hub name is refused before any download is tried.
    with pytest.raises(DataError, match=rf"{setting} only .* tokenizer.name_or_path='gpt2' is a hub tokenizer\. Remove it"):
        load_tokenizer(load_config(None, ["tokenizer.name_or_path=gpt2", setting]))


def test_concurrent_builders_build_once(tmp_path):
    target = tmp_path / "shared"
    calls = []
    barrier = threading.Barrier(4)

    def build(tmp):
        calls.append(tmp)
        (tmp / "done").write_text("ok")

    def worker():
        barrier.wait()
        build_dir_once(target, build, lambda d: (d / "done").is_file())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (target / "done").read_text() == "ok"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".shared.tmp")] == []


def test_failed_build_leaves_no_target(tmp_path):
    target = tmp_path / "t"

    def build(tmp):
        (tmp / "half").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        build_dir_once(target, build, lambda d: d.is_dir())
    assert not target.exists()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


def test_missing_local_tokenizer_without_training_is_a_clear_error(tmp_path):
    cfg = load_config(None, [f"tokenizer.name_or_path={tmp_path / 'nothing'}", "tokenizer.train_if_missing=false"])
    with pytest.raises(DataError, match=r"tokenizer.name_or_path=.*nothing.*ibnorm-llm tokenizer"):
        load_tokenizer(cfg)


def test_hub_tokenizer_missing_offline_is_a_clear_error(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    cfg = load_config(None, ["tokenizer.name_or_path=no-such-org/no-such-tokenizer"])
    with pytest.raises(DataError, match=r"tokenizer.name_or_path='no-such-org/no-such-tokenizer'.*HF_HUB_OFFLINE"):
        load_tokenizer(cfg)


@pytest.mark.parametrize(
    ("name", "local"),
    [("t5-base", False), ("gpt2", False), ("google/t5-v1_1-base", False), ("tokenizers/builtin-sp-4k", True),
     ("./tok", True), ("/abs/tok", True), ("~/tok", True)],
)
def test_local_or_hub_name(name, local):
    assert is_local_tokenizer_path(name) is local


def test_train_tokenizer_script(tmp_path, corpus_file, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  source: files\n  files: [{corpus_file}]\ntokenizer:\n  vocab_size: 400\n")
    out = tmp_path / "tok"
    assert run_command("tokenizer", ["--config", str(config), "--out", str(out)]) == 0
    assert "400 tokens, trained in" in capsys.readouterr().out
    assert len(AutoTokenizer.from_pretrained(str(out))) == 400
    assert run_command("tokenizer", ["--config", str(config), "--out", str(out)]) == 0
    assert "already there" in capsys.readouterr().out
    assert run_command("tokenizer", ["--config", str(config), "--out", str(out), "--force"]) == 0
    assert "trained in" in capsys.readouterr().out
    bad_files = ["data.files=[/nope.txt]", "--out", str(tmp_path / "other")]
    assert run_command("tokenizer", ["--config", str(config), *bad_files]) == 2
    assert "data.files[0]='/nope.txt': file not found" in capsys.readouterr().err


def test_two_processes_building_at_once_build_once(tmp_path):
    """Two ranks starting together: one builds, the other waits and reuses (a real file lock, not threads)."""
    import subprocess
    import sys

    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from ibnorm_llm.data.atomic import build_dir_once\n"
        "root = Path(sys.argv[1])\n"
        "while not (root / 'go').exists(): time.sleep(0.01)\n"
        "def build(tmp):\n"
        "    with open(root / 'builds.log', 'a') as log: log.write(f'{os.getpid()}\\n')\n"
        "    time.sleep(0.5)\n"
        "    (tmp / 'done').write_text('ok')\n"
        "build_dir_once(root / 'shared', build, lambda d: (d / 'done').is_file())\n"
        "print((root / 'shared' / 'done').read_text())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    (tmp_path / "go").touch()
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outputs == ["ok", "ok"]
    assert len((tmp_path / "builds.log").read_text().split()) == 1
