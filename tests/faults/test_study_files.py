"""A study folder whose own files (study.json, seed-N/rows.json, seed-N/seconds.json) are cut
short or junk: ``reproduce --resume`` stops in one sentence naming the file and what to do,
before anything is trained or written."""

import json

import pytest

from nacvae.errors import CheckpointError
from nacvae.studies.folders import add_seconds
from tests.clitools import assert_clean_failure, nacvae

# (preset, a row as that study writes it)
STUDIES = {
    "encoders": ("digits", {"seed": 0, "init": "random"}),
    "vaes": ("fashion-mnist-vae", {"seed": 0, "init": "random", "mode": "finetuned", "curve": []}),
}
GOOD = {"rows": lambda row: [row], "seconds": lambda row: {"seconds": 12.5}}
DAMAGE = {
    "cut short": lambda good: json.dumps(good)[:-3],
    "junk": lambda good: "\x00\x17 not json",
    "wrong value": lambda good: json.dumps([] if isinstance(good, dict) else {"rows": good}),
}
ADVICE = {
    "rows": "delete it to have --resume measure seed 0 again",
    "seconds": "delete it to go on",
    "study": "delete it to have --resume write it again",
}


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


@pytest.mark.parametrize("damage", DAMAGE)
@pytest.mark.parametrize("name", ["rows", "seconds", "study"])
@pytest.mark.parametrize("study", STUDIES)
def test_a_damaged_study_file_is_named_with_what_to_do(tmp_path, study, name, damage):
    preset, row = STUDIES[study]
    out = tmp_path / "study"
    (out / "seed-0").mkdir(parents=True)
    if name == "study":
        path = out / "study.json"
        path.write_text(DAMAGE[damage]({"preset": preset}))
    else:
        path = out / "seed-0" / f"{name}.json"
        path.write_text(DAMAGE[damage](GOOD[name](row)))
    before = _files(out)
    result = nacvae("reproduce", "--preset", preset, "--out", out, "--resume", "--device", "cpu", "--quiet")
    assert_clean_failure(result, f"{path} is damaged")
    assert ADVICE[name] in result.stderr, result.stderr
    assert _files(out) == before  # nothing written, not even study.json


def test_the_wall_time_of_a_seed_is_read_back_checked(tmp_path):
    add_seconds(tmp_path, 2.0)
    add_seconds(tmp_path, 3.0)
    assert json.loads((tmp_path / "seconds.json").read_text()) == {"seconds": 5.0}
    (tmp_path / "seconds.json").write_text('{"seconds": tr')
    with pytest.raises(CheckpointError, match="seconds.json is damaged: it is not valid JSON; delete it"):
        add_seconds(tmp_path, 1.0)
