"""Criteria that read data: taylor, apoz, mean_activation, hrank (activation hooks) and obd (gradients).

Each takes `batches` (default 8): how many batches of `data` (a DataLoader, a list of batches or one
(inputs, targets) pair) to read. The model runs in eval mode, so BatchNorm statistics do not change, and
parameter gradients are left as they were.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dataclasses import dataclass

from ..config import check_bool
from ..graph.groups import DependencyGraph
from ..train.evaluation import move, split_batch
from ..utils.inputs import call_model
from .activations import iter_batches, model_device, record
from .base import Criterion, DataCriterionConfig, member_rows, per_channel, producer_weights, register_criterion


@dataclass
class ActivationConfig(DataCriterionConfig):
    """Activation criteria: `relu` applies ReLU to the observed outputs before apoz / mean / rank."""

    relu: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool(type(self).__name__, "relu", self.relu)


class _Activation(Criterion):
    needs_data = True
    stat = "taylor"
    Config = ActivationConfig

    def score(self, model, graph, data):
        rec = record(model, graph, data, (self.stat,), batches=self.config.batches, relu=self.config.relu)
        return rec.scores(self.stat)


@register_criterion("taylor")
class Taylor(_Activation):
    """Molchanov et al. 2017: |mean over batch and positions of activation x gradient| per channel,
    L2-normalised per layer, averaged over batches and summed over the group's layers."""

    stat = "taylor"


@register_criterion("apoz")
class APoZ(_Activation):
    """Hu et al. 2016: average percentage of zeros after ReLU; the score is 1 - APoZ (higher keeps)."""

    stat = "apoz"


@register_criterion("mean_activation")
class MeanActivation(_Activation):
    """Mean post-ReLU activation of the channel (summed over the group's layers)."""

    stat = "mean_activation"


@register_criterion("hrank")
class HRank(_Activation):
    """Lin et al. 2020: average rank of the channel's post-ReLU feature maps (vectors: 1 when non-zero)."""

    stat = "hrank"


@register_criterion("obd")
class OBD(Criterion):
    """Optimal Brain Damage (LeCun et al. 1989) per filter: sum over the channel's producer weights of
    h_kk * w_k^2 / 2, with the diagonal Hessian estimated by the empirical Fisher (the mean over batches of
    the squared batch gradient)."""

    needs_data = True
    Config = DataCriterionConfig

    def score(self, model, graph: DependencyGraph, data):
        groups = graph.prunable_groups()
        pw = {g.name: producer_weights(model, graph, g) for g in groups}
        params = {id(w): w for ws in pw.values() for _, w in ws if w.requires_grad}
        plist = list(params.values())
        fisher = {k: torch.zeros_like(p, dtype=torch.float32) for k, p in params.items()}
        device = model_device(model)
        n = 0
        was_training = model.training
        model.eval()
        try:
            for batch in iter_batches(data, self.config.batches):
                inputs, targets = move(split_batch(batch), device)
                with torch.enable_grad():
                    loss = F.cross_entropy(call_model(model, inputs), targets)
                    grads = torch.autograd.grad(loss, plist, allow_unused=True)
                for p, gr in zip(plist, grads):
                    if gr is not None:
                        fisher[id(p)] += gr.detach().float() ** 2
                n += 1
        finally:
            model.train(was_training)
        if n == 0:
            raise ValueError("obd: the data gave no batches")
        scores = {}
        for g in groups:
            total = torch.zeros(g.size)
            for m, w in pw[g.name]:
                if id(w) not in fisher:
                    continue
                sal = 0.5 * fisher[id(w)] / n * w.detach().float() ** 2
                total += per_channel(m, member_rows(sal, m).sum(1).cpu())
            scores[g.name] = total
        return scores
