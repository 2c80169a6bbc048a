"""A latency target gets hardware-friendly widths by default: on a latency table whose kernels pad channels to
blocks of 8, policy `auto` keeps every width at a multiple of 8 without being asked (hw_widths=None), and
hw_widths=False turns that off."""
from __future__ import annotations

import pytest

import prunekit as pk

from .test_auto import net, run  # noqa: F401 - `net` is a fixture
from .test_latency_model import fake_model_timer, fake_timer

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("hw", [None, False])
def test_latency_target_rounds_widths_to_the_measured_block(net, hw):  # noqa: F811
    model, graph, _ = net
    timer = fake_timer(block=8)
    opts = {} if hw is None else {"hw_widths": hw}
    counts, pruned = run(net, pk.Target(latency=0.6), evaluations=30, **opts,
                         latency_model={"timer": timer, "model_timer": fake_model_timer(timer)})
    kept = {g.name: g.size - counts.get(g.name, 0) for g in graph.prunable_groups()}
    cut = {n: w for n, w in kept.items() if w < graph.group(n).size}
    assert cut  # something was pruned
    if hw is None:
        assert all(w % 8 == 0 for w in cut.values()), cut
    else:
        assert any(w % 8 for w in cut.values()), cut  # without it the search lands on other widths
