"""run_workflow on a module of no registry, with the caller's loaders and example inputs (a two-input model)."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from prunekit.train import TrainConfig
from prunekit.workflow import ModelConfig, PruneConfig, RecoverConfig, RunData, WorkflowConfig, run_workflow

pytestmark = pytest.mark.usefixtures("single_thread")


class TwoInputNet(nn.Module):
    """A gated MLP called as net(x, m): two positional inputs, as a text model's (input_ids, attention_mask)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.gate = nn.Linear(8, 32), nn.Linear(8, 32)
        self.fc, self.head = nn.Linear(32, 32), nn.Linear(32, 3)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.emb(x)) * torch.sigmoid(self.gate(m))
        return self.head(torch.relu(self.fc(h)))


class Pairs(Dataset):
    """Samples ((x, m), label); the label is a fixed linear rule of x, so the task is learnable."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x, self.m = torch.randn(n, 8, generator=g), torch.randn(n, 8, generator=g)
        self.y = (self.x @ torch.randn(8, 3, generator=torch.Generator().manual_seed(99))).argmax(1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return (self.x[i], self.m[i]), self.y[i]


def _data() -> RunData:
    train = DataLoader(Pairs(256, 1), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))
    return RunData.given(train, DataLoader(Pairs(96, 2), batch_size=48), description={"dataset": "pairs"})


def _trained() -> TwoInputNet:
    torch.manual_seed(0)
    net = TwoInputNet()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    ds = Pairs(256, 1)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(ds.x, ds.m), ds.y).backward()
        opt.step()
    return net


def _config(**over) -> WorkflowConfig:
    adamw = TrainConfig(optimizer="adamw", schedule="constant", weight_decay=0.01, progress=False, verbose=False)
    kw = dict(model=ModelConfig("two-input-net"), prune=PruneConfig(target={"macs": 0.5}, criterion="l1",
                                                                    options={"train_config": adamw}),
              recover=RecoverConfig(finetune_epochs=2, lr=1e-3, distill=True, temperature=2.0, distill_weight=0.7),
              latency_runs=0, progress=False)
    return WorkflowConfig(**{**kw, **over})


EXAMPLE = (torch.zeros(1, 8), torch.zeros(1, 8))


def test_any_module_with_its_own_data_is_pruned_recovered_and_measured():
    base = _trained()
    dense = copy.deepcopy(base)
    res = run_workflow(_config(), data=_data(), base_model=base, example_inputs=EXAMPLE, log=lambda line: None)
    assert res.before["macs"] == 2 * 8 * 32 + 32 * 32 + 32 * 3  # counted on the given two-input example
    assert 0.40 <= res.after["macs"] / res.before["macs"] <= 0.5
    # measured on the given test loader: the dense model's accuracy, recomputed here
    ds = Pairs(96, 2)
    with torch.no_grad():
        dense_top1 = (dense(ds.x, ds.m).argmax(1) == ds.y).float().mean().item()
        pruned_top1 = (res.model(ds.x, ds.m).argmax(1) == ds.y).float().mean().item()
    assert res.before["top1"] == pytest.approx(dense_top1) and dense_top1 > 0.7
    assert res.after["top1"] == pytest.approx(pruned_top1)
    rep = res.report
    assert rep["model"]["name"] == "two-input-net"
    assert rep["data"]["dataset"] == "pairs" and (rep["data"]["train"], rep["data"]["test"]) == (256, 96)
    assert rep["data_read"] == {"source": "loaders given in memory"}
    assert rep["config"]["prune"]["options"]["train_config"]["optimizer"] == "adamw"  # recorded as given
    hist = res.method.history["finetune"]
    assert len(hist) == 2 and all(h["train_loss"] > 0 for h in hist)  # two epochs of distillation ran


def test_same_seed_same_pruned_weights():
    runs = [run_workflow(_config(seed=3), data=_data(), base_model=_trained(), example_inputs=EXAMPLE,
                         log=lambda line: None) for _ in range(2)]
    a, b = (r.model.state_dict() for r in runs)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_refusals_name_the_problem_before_any_work(tmp_path):
    base = _trained()
    before = copy.deepcopy(base.state_dict())
    with pytest.raises(ValueError, match="TwoInputNet without a registry spec.*pass example_inputs"):
        run_workflow(_config(), data=_data(), base_model=base, log=lambda line: None)
    with pytest.raises(ValueError, match="cannot save a TwoInputNet to .*out=None"):
        run_workflow(_config(out=str(tmp_path / "run")), data=_data(), base_model=base, example_inputs=EXAMPLE,
                     log=lambda line: None)
    with pytest.raises(ValueError, match="loaders given in memory .* need the model to prune as base_model"):
        run_workflow(_config(), data=_data(), example_inputs=EXAMPLE, log=lambda line: None)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # nothing was pruned
    assert not (tmp_path / "run" / "report.json").exists()


def _no_data(**over) -> WorkflowConfig:
    kw = dict(model=ModelConfig("two-input-net"), prune=PruneConfig(target={"macs": 0.5}, criterion="l1",
                                                                    policy="uniform"),
              recover=RecoverConfig(finetune_epochs=0), latency_runs=0, progress=False)
    return WorkflowConfig(**{**kw, **over})


def test_a_run_without_data_prunes_as_pk_plan_does_and_reports_no_accuracy():
    import prunekit as pk
    none = RunData.given(None, None, description={"dataset": "none (timing only)"})
    res = run_workflow(_no_data(), data=none, base_model=_trained(), example_inputs=EXAMPLE, log=lambda line: None)
    ref = pk.plan(_trained(), EXAMPLE, target=pk.Target(macs=0.5), criterion="l1", policy="uniform")
    assert {d.name: list(d.kept) for d in res.plan.decisions} == {d.name: list(d.kept) for d in ref.decisions}
    assert res.before["top1"] is None and res.after["top1"] is None
    assert res.report["summary"]["top1_delta"] is None
    assert res.report["data"] == {"dataset": "none (timing only)", "train": None, "test": None}
    assert res.after["macs"] / res.before["macs"] <= 0.5


@pytest.mark.parametrize("over,text", [
    (dict(recover=RecoverConfig(finetune_epochs=1)), "recovery needs a training loader"),
    (dict(prune=PruneConfig(method="iterative", target={"macs": 0.5})), "'iterative' trains while it prunes"),
    (dict(prune=PruneConfig(target={"macs": 0.5}, criterion="taylor")), "criterion 'taylor' needs data"),
])
def test_a_run_without_data_refuses_what_needs_data(over, text):
    with pytest.raises(ValueError, match=text):
        run_workflow(_no_data(**over), data=RunData.given(None, None), base_model=_trained(),
                     example_inputs=EXAMPLE, log=lambda line: None)
    with pytest.raises(ValueError, match="pass example_inputs"):
        run_workflow(_no_data(), data=RunData.given(None, None), base_model=_trained(), log=lambda line: None)
