"""A study's stages in worker processes: dependencies, order of results, failures, and the
same numbers as one process on the same thread count."""

import json
import os
import time

import pytest
import torch

from nacvae.errors import ConfigError
from nacvae.studies.encoders import run_study
from nacvae.studies.stages import Stage, StagePool, choose_jobs, parse_jobs, run_stages
from tests.test_study import TOY


def record(name, folder, seconds=0.0, until=None):
    """A stage that notes when it ran and in which process. With ``until`` it keeps running
    until that stage has started too (at most a minute), so that two stages that can run at
    once are seen to, however late a busy machine starts the second worker."""
    start = time.time()
    open(os.path.join(folder, name + ".started"), "w").close()
    deadline = start + 60
    while until is not None and not os.path.exists(os.path.join(folder, until + ".started")) \
            and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(seconds)
    with open(os.path.join(folder, name), "w") as f:
        json.dump({"start": start, "end": time.time(), "pid": os.getpid(), "threads": torch.get_num_threads()}, f)
    return name.upper()


def fail(message):
    raise ConfigError(message)


def read(folder, name):
    with open(os.path.join(folder, name)) as f:
        return json.load(f)


def test_stages_wait_for_theirs_and_run_side_by_side(tmp_path):
    d = str(tmp_path)
    stages = [Stage("a", record, dict(name="a", folder=d, seconds=0.5, until="b")),
              Stage("b", record, dict(name="b", folder=d, seconds=0.5, until="a")),
              Stage("c", record, dict(name="c", folder=d), after=("a",)),
              Stage("d", record, dict(name="d", folder=d), after=("b", "c"))]
    seen = []
    with StagePool(2, 1) as pool:
        results = run_stages(stages, pool, log=lambda m: None, on_done=lambda n, r: seen.append(n))
    assert results == {"a": "A", "b": "B", "c": "C", "d": "D"}
    a, b, c, dd = (read(d, n) for n in "abcd")
    assert a["start"] < b["end"] and b["start"] < a["end"]  # the two independent stages overlapped
    assert c["start"] >= a["end"] and dd["start"] >= max(b["end"], c["end"])
    assert {a["pid"], b["pid"]} != {os.getpid()} and a["pid"] != b["pid"]
    assert a["threads"] == b["threads"] == 1
    assert sorted(seen) == ["a", "b", "c", "d"] and seen.index("d") == 3


def test_one_job_runs_in_order_here(tmp_path):
    d, logged = str(tmp_path), []
    stages = [Stage("x", record, dict(name="x", folder=d), announce="x starts"),
              Stage("y", record, dict(name="y", folder=d), after=("x",), announce="y starts")]
    assert run_stages(stages, None, log=logged.append) == {"x": "X", "y": "Y"}
    assert logged == ["x starts", "y starts"] and read(d, "x")["pid"] == os.getpid()
    with pytest.raises(ValueError, match="waits for"):
        run_stages([Stage("y", record, dict(name="y", folder=d), after=("x",))], None)


def test_a_failing_stage_stops_the_rest_and_raises(tmp_path):
    d = str(tmp_path)
    stages = [Stage("bad", fail, dict(message="The data is damaged.")),
              Stage("slow", record, dict(name="slow", folder=d, seconds=0.5)),
              Stage("later", record, dict(name="later", folder=d), after=("bad",))]
    with StagePool(2, 1) as pool, pytest.raises(ConfigError, match="The data is damaged"):
        run_stages(stages, pool, log=lambda m: None)
    assert not (tmp_path / "later").exists()


@pytest.mark.parametrize("requested, device, threads, expected", [
    (None, "cpu", 2, (2, 1)), (None, "cpu", 1, (1, 1)), (None, "cuda", 8, (1, 8)),
    (1, "cpu", 2, (1, 2)), (2, "cpu", 4, (2, 2)), (3, "cpu", 2, (3, 1)),
])
def test_jobs_share_the_threads(requested, device, threads, expected):
    assert choose_jobs(requested, device, threads) == expected


def test_no_more_jobs_than_stages_can_run_at_once():
    assert choose_jobs(None, "cpu", 16, width=5) == (5, 3)
    assert choose_jobs(None, "cpu", 2, width=5) == (2, 1)
    assert choose_jobs(None, "cpu", 4, width=1) == (1, 4)
    assert choose_jobs(3, "cpu", 16, width=1) == (3, 5)  # asked for: as given


def test_jobs_value_is_checked():
    assert parse_jobs("auto") is None and parse_jobs("3") == 3
    with pytest.raises(ConfigError, match="--jobs must be a positive integer or 'auto', not '0'"):
        parse_jobs("0")


def test_parallel_study_gives_the_numbers_of_one_process_on_one_thread(tmp_path, monkeypatch):
    quiet = dict(seeds=1, device="cpu", progress=False, log=lambda m: None)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(TOY, tmp_path / "serial", jobs=1, **quiet)
    finally:
        torch.set_num_threads(old)
    run_study(TOY, tmp_path / "parallel", jobs=2, **quiet)
    serial = json.loads((tmp_path / "serial" / "seed-0" / "rows.json").read_text())
    parallel = json.loads((tmp_path / "parallel" / "seed-0" / "rows.json").read_text())
    assert [r["init"] for r in parallel] == [r["init"] for r in serial]
    assert parallel == serial
