"""pk.verify: exact against the zeroed original, approximate with a reason, and a flag when the model's output
does not depend on its input (so that agreement would prove nothing)."""
import copy

import pytest
import torch
from torch import nn

import prunekit as pk
from prunekit.surgery.verify import make_input_sensitive


def _net(zero_head: bool) -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.BatchNorm2d(16),
                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    if zero_head:
        nn.init.zeros_(m[-1].weight)
    return m.eval()


def test_exact_on_a_model_whose_output_depends_on_the_input():
    m, x = _net(False), torch.randn(1, 3, 12, 12)
    plan = pk.plan(m, x, ratio=0.5)
    rep = pk.verify(m, pk.apply(copy.deepcopy(m), plan), plan, x)
    assert rep.exact and rep.max_rel_diff < 1e-5 and not rep.weak and rep.input_sensitivity > 0.01
    assert rep.params_after < rep.params_before


def test_a_constant_output_makes_a_weak_check_until_the_model_is_made_input_sensitive():
    m, x = _net(True), torch.randn(1, 3, 12, 12)
    plan = pk.plan(m, x, ratio=0.5)
    pruned = pk.apply(copy.deepcopy(m), plan)
    # the output is the classifier's bias for any input: agreement proves nothing, and the report says so
    rep = pk.verify(m, pruned, plan, x)
    assert rep.exact and rep.weak and rep.input_sensitivity == 0.0 and "WEAK CHECK" in str(rep)
    # weights that are not the original's kept slices are refused before any comparison of outputs
    with torch.no_grad():
        pruned[0].weight.mul_(-3.0)
    with pytest.raises(ValueError, match=r"kept slices of 0\.weight differ"):
        pk.verify(m, pruned, plan, x)
    make_input_sensitive(m, x)
    assert m[-1].weight.abs().sum() > 0 and m[1].running_var.mean() != 1.0
    plan = pk.plan(m, x, ratio=0.5)
    pruned = pk.apply(copy.deepcopy(m), plan)
    assert not pk.verify(m, pruned, plan, x).weak and pk.verify(m, pruned, plan, x).exact
    broken = copy.deepcopy(pruned)
    broken[0].stride = (2, 2)  # a surgery bug that keeps the weights: only the outputs can tell
    assert not pk.verify(m, broken, plan, x).exact  # now a broken model is caught


def test_token_inputs_are_shuffled_for_the_sensitivity_check():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Embedding(20, 8), nn.Flatten(), nn.Linear(8 * 6, 3)).eval()
    x = torch.randint(0, 20, (2, 6))
    plan = pk.plan(m, x, ratio=0.25)
    rep = pk.verify(m, pk.apply(copy.deepcopy(m), plan), plan, x)
    assert rep.exact and not rep.weak
