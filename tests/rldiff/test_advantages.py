"""Returns-to-go and group normalization."""

import pytest
import torch

from rldiff.advantages import group_normalize, group_normalize_by_id, returns_to_go


def test_returns_to_go_by_hand():
    r = torch.tensor([[1.0, 2.0, 4.0]])
    assert torch.equal(returns_to_go(r, 0.0), r)
    assert torch.equal(returns_to_go(r, 1.0), torch.tensor([[7.0, 6.0, 4.0]]))
    # gamma = 0.5: [1 + 0.5*2 + 0.25*4, 2 + 0.5*4, 4] = [3, 4, 4]
    assert torch.equal(returns_to_go(r, 0.5), torch.tensor([[3.0, 4.0, 4.0]]))
    with pytest.raises(ValueError, match="gamma"):
        returns_to_go(r, 1.5)


def test_group_normalize_by_hand():
    # group [1, 3]: mean 2, population std 1 -> [-1, 1] (eps 0)
    x = torch.tensor([[[1.0], [3.0]], [[5.0], [5.0]]])  # [B=2, G=2, F=1]
    out = group_normalize(x, eps=0.0 + 1e-12)
    assert torch.allclose(out[0], torch.tensor([[-1.0], [1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 1))  # zero-variance group -> zero advantage


def test_group_normalize_by_id_equals_reshape_form_in_any_order():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 5, generator=g)  # [B, G, F]
    ref = group_normalize(x, 1e-4).reshape(12, 5)
    group = torch.arange(3).repeat_interleave(4)
    perm = torch.randperm(12, generator=g)
    out, std = group_normalize_by_id(x.reshape(12, 5)[perm], group[perm], 1e-4)
    assert torch.allclose(out, ref[perm], atol=1e-6)
    assert torch.allclose(std, x.std(dim=1, correction=0, keepdim=True).expand(3, 4, 5).reshape(12, 5)[perm], atol=1e-6)


def test_group_normalize_by_id_unequal_groups():
    x = torch.tensor([1.0, 3.0, 10.0, 20.0, 30.0])
    out, _ = group_normalize_by_id(x, torch.tensor([0, 0, 1, 1, 1]), eps=0.0)
    # group 1: mean 20, std sqrt(200/3)
    assert torch.allclose(out, torch.tensor([-1.0, 1.0, -10 / (200 / 3) ** 0.5, 0.0, 10 / (200 / 3) ** 0.5]), atol=1e-6)
