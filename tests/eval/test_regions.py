import torch
from torch import nn

from nacvae.eval.regions import ToyEncoder, activation_patterns, grid, region_ids, train_toy_nac, two_rings


def quadrant_encoder() -> ToyEncoder:
    """Backbone ReLU(identity(x)); projection head constant, so regions are the 4 quadrants."""
    enc = ToyEncoder(width=2, depth=1, code_dim=3)
    with torch.no_grad():
        lin = enc.backbone[0]
        lin.weight.copy_(torch.eye(2))
        lin.bias.zero_()
        for layer in (enc.projector.net[0], enc.projector.net[2]):
            nn.init.zeros_(layer.weight)
            nn.init.ones_(layer.bias)
    return enc


def test_quadrants_are_four_regions():
    points = grid(-1, 1, 50)  # even resolution: no point on an axis
    ids, count = region_ids(activation_patterns(quadrant_encoder(), points))
    assert count == 4
    q = (points[:, 0] > 0).long() * 2 + (points[:, 1] > 0).long()
    # ids are a relabelling of the quadrant index
    assert len({(int(a), int(b)) for a, b in zip(ids, q)}) == 4


def test_region_ids_group_equal_patterns():
    patterns = torch.tensor([[1, 0], [0, 1], [1, 0], [1, 1]], dtype=torch.bool)
    ids, count = region_ids(patterns)
    assert count == 3 and ids[0] == ids[2] and len(set(ids.tolist())) == 3


def test_toy_nac_training_runs_and_lowers_the_loss():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    enc = ToyEncoder(width=16, code_dim=8)
    losses = train_toy_nac(enc, two_rings(512, g), steps=60, batch_size=64)
    assert sum(losses[-10:]) < sum(losses[:10])
