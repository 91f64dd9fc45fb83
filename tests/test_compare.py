"""``nacvae compare``: the table of run folders written here by hand, and the command."""

import json

from nacvae.studies.compare import compare_table, format_table
from tests.clitools import assert_clean_failure, nacvae


def _run(folder, section, *records):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"kind": "pretrain", "status": "complete", "pretrain": section}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _two(tmp_path):
    a = _run(tmp_path / "a", {"objective": "nac", "lr": 3.0, "seed": 0, "options": {"flip_prob": 0.1}},
             {"event": "train", "step": 5, "loss": 1.0},
             {"event": "eval_linear", "test_accuracy": 0.5}, {"event": "eval_linear", "test_accuracy": 0.7},
             {"event": "eval_knn", "top1": 0.6}, {"event": "monitor", "step": 5, "knn_top1": 0.4, "map": 0.2},
             {"event": "eval_gap", "approximation_gap": 1.5, "amortisation_gap": 2.5})
    b = _run(tmp_path / "b", {"objective": "nac", "lr": 3.0, "seed": 1, "options": {"flip_prob": 0.4}},
             {"event": "eval_retrieval", "map": 0.25}, {"event": "eval_new", "score": 3, "seconds": 9.0})
    return a, b


def test_table_holds_the_differing_settings_and_the_newest_evaluations(tmp_path):
    a, b = _two(tmp_path)
    rows = {r["name"]: r["values"] for r in compare_table([a, b])["rows"]}
    assert rows["seed"] == [0, 1] and rows["flip_prob"] == [0.1, 0.4] and "lr" not in rows and "kind" not in rows
    assert rows["linear top-1"] == [0.7, None] and rows["k-NN top-1"] == [0.6, None]
    assert rows["mAP"] == [None, 0.25] and rows["amortisation gap"] == [2.5, None]
    assert rows["new score"] == [None, 3] and "new seconds" not in rows
    text = format_table(compare_table([a, b]), markdown=True)
    assert text.splitlines()[0] == f"|  | {a} | {b} |" and "| linear top-1 | 0.7 | - |" in text


def test_command_prints_text_json_and_plots(tmp_path):
    a, b = _two(tmp_path)
    text = nacvae("compare", a, b)
    assert text.exit_code == 0 and "flip_prob" in text.stdout and "0.25" in text.stdout
    assert json.loads(nacvae("compare", "--json", a, b).stdout)["runs"] == [str(a), str(b)]
    figure = tmp_path / "monitor.png"
    plotted = nacvae("compare", a, b, "--plot", figure)
    assert plotted.exit_code == 0 and figure.read_bytes()[:4] == b"\x89PNG"
    assert f"{b} has no monitor records" in plotted.stderr
    assert_clean_failure(nacvae("compare", b, "--plot", figure), "None of the runs has monitor records")
    assert_clean_failure(nacvae("compare", tmp_path / "nothing"), "is not a nacvae run folder")
