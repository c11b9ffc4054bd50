import json

import pytest

from ibnorm_llm.config import load_config
from ibnorm_llm.data import DataError
from ibnorm_llm.data.corpus import local_corpus


def files_cfg(*paths, extra=()):
    return load_config(None, ["data.source=files", f"data.files={json.dumps([str(p) for p in paths])}", *extra])


def documents(*paths, extra=()):
    return list(local_corpus(files_cfg(*paths, extra=extra).data).documents())


@pytest.fixture
def three_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("First paragraph of a.\nStill first.\n\nSecond paragraph.\n\n\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"body": "json one"}) + "\n" + json.dumps({"body": "json two"}) + "\n")
    pq.write_table(pa.table({"body": ["parquet one", "  ", "parquet three"]}), tmp_path / "c.parquet")
    return tmp_path


def test_txt_jsonl_parquet_and_globs(three_formats):
    d = three_formats
    assert documents(d / "a.txt") == ["First paragraph of a.\nStill first.", "Second paragraph."]
    assert documents(d / "a.txt", extra=["data.txt_sample_by=document"]) == [(d / "a.txt").read_text()]
    assert documents(d / "b.jsonl", extra=["data.text_field=body"]) == ["json one", "json two"]
    assert documents(d / "c.parquet", extra=["data.text_field=body"]) == ["parquet one", "parquet three"]
    every = documents(d / "*.jsonl", d / "*.parquet", extra=["data.text_field=body"])
    assert every == ["json one", "json two", "parquet one", "parquet three"]


def test_fingerprint_follows_file_content(three_formats):
    path = three_formats / "b.jsonl"
    before = local_corpus(files_cfg(path).data).fingerprint
    assert local_corpus(files_cfg(path).data).fingerprint == before
    path.write_text(json.dumps({"body": "changed"}) + "\n")
    assert local_corpus(files_cfg(path).data).fingerprint != before


@pytest.mark.parametrize(
    ("setup", "pattern"),
    [
        (lambda d: d / "missing.jsonl", r"data.files\[0\]=.*missing.jsonl.*file not found"),
        (lambda d: d / "none-*.jsonl", r"none-\*.jsonl.*matches no file"),
        (lambda d: d, r"is a directory.*glob"),
        (lambda d: (d / "x.csv").write_text("a") and d / "x.csv", r"x.csv has an unsupported extension"),
        (lambda d: (d / "empty.jsonl").write_text("") or d / "empty.jsonl", r"empty.jsonl is empty"),
    ],
)
def test_bad_paths_name_the_file(tmp_path, setup, pattern):
    path = setup(tmp_path)
    with pytest.raises(DataError, match=pattern):
        local_corpus(files_cfg(path).data)


def test_missing_text_field_names_field_and_file(three_formats):
    with pytest.raises(DataError, match=r"b.jsonl row 0: no field 'text' \(data.text_field\); fields present: body"):
        documents(three_formats / "b.jsonl")
    with pytest.raises(DataError, match=r"c.parquet row 0: no field 'content'"):
        documents(three_formats / "c.parquet", extra=["data.text_field=content"])


def test_blank_only_file_and_non_text_field_are_errors(tmp_path):
    blank = tmp_path / "blank.jsonl"
    blank.write_text(json.dumps({"text": "  "}) + "\n")
    with pytest.raises(DataError, match=r"blank.jsonl: contains no non-blank documents"):
        documents(blank)
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text(json.dumps({"text": 5}) + "\n")
    with pytest.raises(DataError, match=r"numbers.jsonl row 0: field 'text' holds int"):
        documents(numbers)
