"""Help texts say what each command does, and nothing of another command's."""

import pytest

from tests.clitools import nacvae


@pytest.mark.parametrize("command", ["retrieval", "codes"])
def test_eval_help_of_retrieval_and_codes_speaks_of_no_linear_probe(command):
    text = nacvae("eval", command, "--help").stdout
    assert "linear" not in text.lower() and "--checkpoint FILE" in text


def test_linear_help_keeps_its_own_words_and_teacher_is_a_path():
    assert "plain backbone state dict" in " ".join(nacvae("eval", "linear", "--help").stdout.split())
    text = nacvae("pretrain", "--help").stdout
    assert "--teacher PATH" in text and "--config PATH" in text
