"""The final plan check: groups whose widths break the forward only at the planned counts (a Python assert, a
failed combination) are excluded with the error as reason and the plan is allocated again, never a crash."""
import copy

import torch
from torch import nn

import prunekit as pk


class Picky(nn.Module):
    """Two branches; the model asserts a width that one channel less passes but the 25% plan does not."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1)
        self.head_a, self.head_b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        ya, yb = torch.relu(self.a(x)), torch.relu(self.b(x))
        assert ya.shape[1] != 6, "branch a cannot be 6 wide"
        return self.head_a(ya) + self.head_b(yb)


def test_groups_that_break_the_forward_at_the_planned_count_are_excluded():
    torch.manual_seed(0)
    model, x = Picky().eval(), torch.randn(2, 3, 8, 8)
    assert pk.trace(model, x).group("a").prunable  # the probe removes one channel: 7 passes
    plan = pk.plan(model, x, ratio=0.25)
    assert plan.summary() == {"b": {"size": 8, "kept": 6}}
    assert plan.meta["excluded"] == {"a": "AssertionError: branch a cannot be 6 wide"}
    pruned = pk.apply(copy.deepcopy(model), plan)
    assert pk.verify(model, pruned, plan, x).exact
