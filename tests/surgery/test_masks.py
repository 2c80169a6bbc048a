"""Masks: parametrization, survival through training, removal, N:M exactness."""
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from prunekit.surgery.masks import (
    apply_masks, get_masks, nm_mask, nm_masks, prune_nm, remove_masks, semi_structured_supported, skip_classifier,
    sparsity, target_layers, to_semi_structured,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 32), nn.ReLU(),
                         nn.Linear(32, 10))


def _random_masks(model: nn.Module, keep: float = 0.3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {k: torch.rand(m.weight.shape, generator=g) < keep for k, m in target_layers(model)}


def test_masks_survive_training_steps():
    model = _net()
    masks = _random_masks(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    apply_masks(model, masks)   # after the optimizer exists: parameters keep their identity
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(5):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    for key, m in target_layers(model):
        w = m.weight
        assert torch.count_nonzero(w[~masks[key]]) == 0
        assert torch.count_nonzero(w[masks[key]]) == int(masks[key].sum())   # the kept weights trained
    remove_masks(model)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    for key, m in target_layers(model):
        assert torch.count_nonzero(m.weight[~masks[key]]) == 0
    assert set(model.state_dict()) == set(_net().state_dict())


def test_apply_masks_replaces_and_reports():
    model = _net()
    masks = _random_masks(model, 0.5)
    apply_masks(model, masks)
    got = get_masks(model)
    assert set(got) == {"0.weight", "3.weight", "5.weight"}
    assert all(torch.equal(got[k], masks[k]) for k in masks)
    ones = {k: torch.ones_like(v) for k, v in masks.items()}
    apply_masks(model, ones)    # replacing: the previously stored values were zeroed, they stay zero
    assert sparsity(model) == pytest.approx(1 - sum(int(v.sum()) for v in masks.values()) /
                                            sum(v.numel() for v in masks.values()))


def test_all_ones_mask_changes_nothing_and_remove_without_permanent_restores():
    model = _net()
    x = torch.randn(4, 3, 8, 8)
    ref = model(x)
    apply_masks(model, {k: torch.ones(m.weight.shape, dtype=torch.bool) for k, m in target_layers(model)})
    assert torch.equal(model(x), ref)
    remove_masks(model, make_permanent=False)
    assert torch.equal(model(x), ref)


def test_bad_mask_errors():
    model = _net()
    with pytest.raises(KeyError, match="nope"):
        apply_masks(model, {"nope.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"3.weight": torch.ones(3, 3)})


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 8), (1, 2)])
def test_nm_exactly_n_per_group(n, m):
    torch.manual_seed(0)
    for shape in [(16, 64), (8, 16, 3, 3)]:
        w = torch.randn(shape)
        mask = nm_mask(w, n, m)
        groups = mask.reshape(shape[0], -1, m)
        assert bool((groups.sum(-1) == n).all())
        kept = (w.abs() * mask).reshape(shape[0], -1, m)
        dropped_max = (w.abs() * ~mask).reshape(shape[0], -1, m).amax(-1)
        kept_min = torch.where(groups, kept, torch.inf).amin(-1)
        assert bool((kept_min >= dropped_max).all())   # the largest magnitudes are the ones kept


def test_prune_nm_model_and_indivisible_layers():
    model = _net()      # conv0 input length 27 is not divisible by 4: skipped
    masks = prune_nm(model, 2, 4)
    assert set(masks) == {"3.weight", "5.weight"}
    for key in masks:
        w = model.get_submodule(key.split(".")[0]).weight
        assert bool(((w.reshape(w.shape[0], -1, 4) != 0).sum(-1) == 2).all())
    with pytest.raises(ValueError, match="divisible"):
        nm_masks(_net(), 2, 4, skip_incompatible=False)
    with pytest.raises(ValueError):
        nm_mask(torch.randn(4, 8), 5, 4)


def test_skip_classifier_filter():
    model = _net()
    keys = [k for k, _ in target_layers(model, skip_classifier(model))]
    assert keys == ["0.weight", "3.weight"]


def test_to_semi_structured_guarded():
    model = nn.Sequential(nn.Linear(64, 64))
    if not semi_structured_supported():
        with pytest.raises(RuntimeError, match="compute capability"):
            to_semi_structured(model)
        return
    model = model.half().cuda()
    prune_nm(model, 2, 4)
    x = torch.randn(32, 64, device="cuda", dtype=torch.half)
    ref = model(x)
    assert to_semi_structured(model) == ["0.weight"]
    torch.testing.assert_close(model(x), ref, rtol=1e-2, atol=1e-2)


def test_removing_masks_on_a_deepcopy_leaves_the_original_working():
    import copy
    model = _net()
    apply_masks(model, _random_masks(model))
    x = torch.randn(2, 3, 8, 8)
    ref = model(x)
    twin = copy.deepcopy(model)
    remove_masks(twin)
    assert torch.equal(model(x), ref) and torch.equal(twin(x), ref)
    assert parametrize.is_parametrized(model[3]) and not parametrize.is_parametrized(twin[3])
