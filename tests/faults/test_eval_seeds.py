"""Every evaluation refuses a seed that is negative or too large for torch, before it loads
anything, and so never records one."""

from __future__ import annotations

import pytest

from nacvae.checks import MAX_SEED
from tests.clitools import assert_clean_failure, nacvae

VERBS = [
    ["linear", "--init", "random"],
    ["retrieval", "--init", "random"],
    ["codes", "--init", "random"],
    ["loglik", "--run", "{missing}"],
    ["gap", "--run", "{missing}"],
]


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: v[0])
@pytest.mark.parametrize("seed,fragment", [("-1", "--seed must not be negative, got -1"),
                                           (str(MAX_SEED + 1), f"--seed must be at most {MAX_SEED}")])
def test_a_bad_seed_is_refused(tmp_path, verb, seed, fragment):
    # A run that does not exist: the seed is checked first, so its error is the one shown.
    args = [a.format(missing=tmp_path / "missing") for a in verb]
    assert_clean_failure(nacvae("eval", *args, "--seed", seed), fragment)


def test_a_bad_split_seed_is_refused():
    assert_clean_failure(nacvae("eval", "retrieval", "--init", "random", "--split-seed", "-1"),
                         "--split-seed must not be negative, got -1")
