"""``--data flickr25k`` on a tiny MIRFLICKR-layout folder: pretraining and multi-label retrieval."""

import json

import numpy as np
import pytest

from tests.clitools import assert_clean_failure, nacvae
from tests.imagefiles import make_mirflickr

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(0)
    labels = (rng.random((12, 24)) < 0.2).astype(np.uint8)
    labels[:, 1] |= np.arange(12) % 2 == 0
    labels[7] = 0
    root = make_mirflickr(tmp_path_factory.mktemp("flickr"), labels)
    out = tmp_path_factory.mktemp("runs") / "flickr"
    result = nacvae("pretrain", "--data", "flickr25k", "--data-dir", root, "--arch", "resnet18", "--steps", "1",
                    "--batch-size", "4", "--code-dim", "16", "--image-size", "64", "--workers", "0",
                    "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    return out


def test_retrieval_json_on_multi_label_data(run):
    result = nacvae("eval", "retrieval", "--run", run, "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    # 11 labelled images: 1 query (10%), 10 in the gallery
    assert out["num_queries"] == 1 and out["gallery_size"] == 10 and out["queries_per_class"] is None
    assert out["relevance"] == "shares a label" and out["split"] == "analogue" and 0.0 < out["map"] <= 1.0


def test_linear_probe_refuses_multi_label_data(run):
    assert_clean_failure(nacvae("eval", "linear", "--run", run, "--workers", "0"), "multi-label")


def test_queries_per_class_is_refused(run):
    result = nacvae("eval", "retrieval", "--run", run, "--queries-per-class", "2", "--workers", "0")
    assert_clean_failure(result, "--queries-per-class")
