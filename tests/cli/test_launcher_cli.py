"""A user error under torchrun reaches torchrun's failure summary as the one sentence."""

import json

from tests.clitools import assert_clean_failure, nacvae


def test_user_error_is_written_to_torchruns_error_file(tmp_path, monkeypatch):
    error_file = tmp_path / "error.json"
    monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(error_file))
    result = nacvae("eval", "codes", "--init", "random", "--data", "mnist")
    assert_clean_failure(result, "Unknown dataset")
    record = json.loads(error_file.read_text())
    message = record["message"]
    assert message["message"] == result.stderr.strip()
    assert int(message["extraInfo"]["timestamp"]) > 0
    assert "py_callstack" not in message["extraInfo"]  # torchrun would print it instead of the sentence


def test_no_error_file_without_torchrun(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHELASTIC_ERROR_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert_clean_failure(nacvae("eval", "codes", "--init", "random", "--data", "mnist"), "Unknown dataset")
    assert list(tmp_path.iterdir()) == []
