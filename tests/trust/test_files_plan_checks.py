"""Plans that do not fit raise before anything changes; malformed plans raise PlanFormatError naming the field;
verify refuses an original the pruned model was not cut from."""
import copy
import json
import re

import pytest
import torch

import prunekit as pk
from prunekit.graph.plan import GroupDecision, PruningPlan
from prunekit.models import create

from .files_helpers import X, pruned_lenet


def _state(m: torch.nn.Module) -> dict:
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resnet20_plan_is_refused_by_resnet32_which_stays_untouched():
    torch.manual_seed(0)
    r20 = create("resnet20", num_classes=10, in_channels=1, width=0.25).eval()
    r32 = create("resnet32", num_classes=10, in_channels=1, width=0.25).eval()
    plan = pk.plan(r20, X, ratio=0.5)
    # every tensor the plan cuts exists in resnet32 with the same shape: only the identity tells them apart
    shapes = {k: list(v.shape) for k, v in r32.state_dict().items()}
    assert all(shapes[k] == v for k, v in plan.shapes.items())
    before, convs = _state(r32), [m.out_channels for m in r32.modules() if isinstance(m, torch.nn.Conv2d)]
    with pytest.raises(pk.PlanMismatchError, match="made for another model"):
        pk.apply(r32, plan)
    assert _same(before, _state(r32))
    assert convs == [m.out_channels for m in r32.modules() if isinstance(m, torch.nn.Conv2d)]
    assert pk.apply(copy.deepcopy(r20), plan).conv1.out_channels == 2


def test_another_width_and_an_already_pruned_model_are_refused():
    m, p, plan = pruned_lenet()
    torch.manual_seed(0)
    narrow = create("lenet5", num_classes=10, in_channels=1, width=0.25).eval()
    before = _state(narrow)
    with pytest.raises(pk.PlanMismatchError, match=r"conv1.weight: model has shape \[2, 1, 5, 5\], plan expects "
                                                    r"\[3, 1, 5, 5\]"):
        pk.apply(narrow, plan)
    assert _same(before, _state(narrow))
    with pytest.raises(pk.PlanMismatchError):
        pk.apply(p, plan)


def test_plans_without_shapes_need_the_documented_opt_out():
    m, p, plan = pruned_lenet()
    bare = pk.PruningPlan.from_dict({**plan.to_dict(), "shapes": {}})
    bare.identity = None
    before = _state(m)
    with pytest.raises(pk.PlanMismatchError, match="records no shape.*allow_unshaped=True"):
        pk.apply(m, bare)
    assert _same(before, _state(m))
    again = pk.apply(copy.deepcopy(m), bare, allow_unshaped=True)
    assert torch.equal(again(X), p(X))


@pytest.mark.parametrize("kept, message", [
    ([0, 0, 1], "duplicate kept indices [0]"), ([0, 9], "out of range 0..2: [9]"), ([], "is empty"),
    ([2, 0, 1], "must be in increasing order"), (["1"], "must be an integer"),
])
def test_bad_kept_lists_raise_from_json_and_from_code(kept, message):
    m, _, plan = pruned_lenet()
    data = plan.to_dict()
    name, size = data["groups"][0]["name"], data["groups"][0]["size"]
    assert size == 3
    data["groups"][0]["kept"] = kept
    with pytest.raises(pk.PlanFormatError, match=r"groups\[0\]\.kept") as err:
        pk.PruningPlan.from_dict(data)
    assert message in str(err.value)
    coded = copy.deepcopy(plan)
    coded.decisions[0] = GroupDecision(name, size, kept, coded.decisions[0].members)
    before = _state(m)
    with pytest.raises(pk.PlanFormatError, match=f"group {name!r} kept"):
        pk.apply(m, coded)
    assert _same(before, _state(m))


def test_from_kept_refuses_duplicates_instead_of_dropping_them():
    m, _, plan = pruned_lenet()
    g = pk.trace(m, X)
    name = plan.decisions[0].name
    with pytest.raises(pk.PlanFormatError, match=f"group {name!r}: duplicate kept indices \\[1\\]"):
        pk.PruningPlan.from_kept(g, {name: [0, 1, 1]})
    good = pk.PruningPlan.from_kept(g, {name: [0, 2]})
    pruned = pk.apply(copy.deepcopy(m), good)
    assert good.summary()[name] == {"size": 3, "kept": 2}
    assert pruned.conv1.out_channels == 2 and pruned.conv2.in_channels == 2


def test_summary_agrees_with_the_applied_model():
    m, p, plan = pruned_lenet()
    after = dict(p.state_dict())
    for d in plan.decisions:
        for mem in d.members:
            full = plan.shapes[mem.key][mem.dim]
            removed = len(mem.positions(d.removed))
            assert after[mem.key].shape[mem.dim] == full - removed
            if all(len(ix) == 1 for ix in mem.index):
                assert after[mem.key].shape[mem.dim] == plan.summary()[d.name]["kept"]


MUTATIONS = [
    (lambda d: d.pop("groups"), "expected a JSON object with a 'groups' list"),
    (lambda d: d.update(version=99), "version = 99 is newer"),
    (lambda d: d.update(version="1"), "version must be an integer"),
    (lambda d: d.update(bogus=1), "unknown entries ['bogus']"),
    (lambda d: d.update(shapes=[]), "shapes must be a JSON object"),
    (lambda d: d["shapes"].update({"conv1.weight": "x"}), "shapes['conv1.weight'] must be a list"),
    (lambda d: d.update(meta=3), "meta must be a JSON object"),
    (lambda d: d.update(patches={}), "patches must be a list"),
    (lambda d: d.update(identity={"tensors": 1}), "identity.sha256 is missing"),
    (lambda d: d["groups"][0].pop("members"), r"groups[0].members is missing"),
    (lambda d: d["groups"][0].update(size=0), "groups[0].size must be >= 1"),
    (lambda d: d["groups"][0].update(size=True), "groups[0].size must be an integer"),
    (lambda d: d["groups"][0].update(name=5), "groups[0].name must be a string"),
    (lambda d: d["groups"][0].update(notes="x"), "groups[0].notes must be a list"),
    (lambda d: d["groups"][0].update(members=[]), "groups[0].members is empty"),
    (lambda d: d["groups"][0]["members"][0].pop("key"), "groups[0].members[0].key is missing"),
    (lambda d: d["groups"][0]["members"][0].update(dim=-1), "groups[0].members[0].dim must be >= 0"),
    (lambda d: d["groups"][0]["members"][0].update(dim=7), "groups[0].members[0].dim = 7"),
    (lambda d: d["groups"][0]["members"][0].update(index=[[0]]), "groups[0].members[0].index has 1 entries"),
    (lambda d: d["groups"][0]["members"][0]["index"][0].append(10 ** 6), "is out of range for dim"),
    (lambda d: d["groups"][0]["members"][0]["index"].__setitem__(0, 3), "index[0] must be a list"),
    (lambda d: d["groups"].append(d["groups"][0]), "appears twice"),
    (lambda d: d.update(sha256="0" * 64), "sha256 does not match the plan's content"),
]


@pytest.mark.parametrize("i", range(len(MUTATIONS)))
def test_malformed_plans_raise_plan_format_error_naming_the_field(i):
    _, _, plan = pruned_lenet()
    mutate, message = MUTATIONS[i]
    data = json.loads(plan.to_json())
    if i != len(MUTATIONS) - 1:
        data.pop("sha256")
    mutate(data)
    with pytest.raises(pk.PlanFormatError) as err:
        pk.PruningPlan.from_json(json.dumps(data))
    assert message in str(err.value)


def test_apply_takes_a_plan_file_or_json_text_and_nothing_else(tmp_path):
    m, p, plan = pruned_lenet()
    path = plan.save(tmp_path / "plan.json")
    for given in (str(path), path, plan.to_json(), plan.to_dict()):
        assert torch.equal(pk.apply(copy.deepcopy(m), given)(X), p(X))
    with pytest.raises(FileNotFoundError, match="no such plan file"):
        pk.apply(copy.deepcopy(m), str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="plan must be a PruningPlan, a plan dict, JSON text or a plan file path; "
                                        "got int"):
        pk.apply(copy.deepcopy(m), 42)
    with pytest.raises(FileExistsError):
        plan.save(path)


def test_verify_refuses_an_original_the_pruned_model_was_not_cut_from():
    m, p, plan = pruned_lenet()
    assert pk.verify(m, p, plan, X).exact
    torch.manual_seed(1)
    unrelated = create("lenet5", num_classes=10, in_channels=1, width=0.5).eval()
    with pytest.raises(ValueError, match="not made from this original by this plan: the kept slices of conv1.weight "
                                         "differ"):
        pk.verify(unrelated, p, plan, X)
    other_arch = create("lenet300", num_classes=10, in_channels=1).eval()
    with pytest.raises(pk.PlanMismatchError):
        pk.verify(other_arch, p, plan, X)
    tuned = copy.deepcopy(p)
    with torch.no_grad():
        tuned.fc3.bias.add_(1e-3)
    with pytest.raises(ValueError, match="kept slices of fc3.bias differ"):
        pk.verify(m, tuned, plan, X)


def test_channel_masks_run_the_same_checks():
    from prunekit.surgery.channel_masks import mask_channels

    torch.manual_seed(0)
    r20 = create("resnet20", num_classes=10, in_channels=1, width=0.25).eval()
    r32 = create("resnet32", num_classes=10, in_channels=1, width=0.25).eval()
    before = _state(r32)
    with pytest.raises(pk.PlanMismatchError, match="made for another model"):
        mask_channels(r32, pk.plan(r20, X, ratio=0.5))
    assert _same(before, _state(r32)) and not hasattr(r32.conv1, "parametrizations")


@pytest.mark.parametrize("edit", ["drop", "index"])
def test_a_hand_edited_plan_whose_group_lost_a_member_is_refused_by_name(tmp_path, edit):
    """L58b: with the sha256 deleted (allowed for hand edits) and one member of a group removed, pk.apply
    succeeded and the model failed later in forward; the plan now records each group's members."""
    torch.manual_seed(0)
    model = create("resnet20", num_classes=10, in_channels=1, width=0.25).eval()
    data = json.loads(pk.plan(model, X, ratio=0.5).to_json())
    del data["sha256"]
    group = next(g for g in data["groups"] if len(g["members"]) > 2)
    if edit == "drop":
        group["members"].pop()
    else:  # a member moved to other channel positions
        group["members"][0]["index"] = group["members"][0]["index"][::-1]
    before = _state(model)
    with pytest.raises(pk.PlanMismatchError, match=rf"group '{re.escape(group['name'])}': its members \(\d+ tensor slices\) "
                                                   "are not the ones recorded when the plan was made"):
        pk.apply(model, data)
    assert _same(before, _state(model))
    # the documented hand edit, other kept channels, is still applied
    data = json.loads(pk.plan(model, X, ratio=0.5).to_json())
    del data["sha256"]
    g = data["groups"][0]
    g["kept"] = list(range(len(g["kept"])))
    out = pk.apply(copy.deepcopy(model), data)
    assert out(X).shape == (X.shape[0], 10)
    # a plan written before groups were recorded (identity without them) is still read and applied
    data["identity"].pop("groups")
    assert pk.apply(copy.deepcopy(model), data)(X).shape == (X.shape[0], 10)


def test_probe_plans_skip_member_digests_but_keep_the_model_identity():
    """Throw-away plans (the forward probes) leave out the per-group digests; the model check still holds and a
    plan from pk.plan records a digest for every group it cuts."""
    torch.manual_seed(0)
    r20 = create("resnet20", num_classes=10, in_channels=1, width=0.25).eval()
    r32 = create("resnet32", num_classes=10, in_channels=1, width=0.25).eval()
    full = pk.plan(r20, X, ratio=0.5)
    graph = pk.trace(r20, X)
    quick = PruningPlan.from_kept(graph, full.kept(), member_digests=False)
    assert "groups" not in quick.identity and quick.identity == {k: full.identity[k] for k in ("tensors", "sha256")}
    assert sorted(full.identity["groups"]) == sorted(d.name for d in full.decisions if d.removed)
    a, b = pk.apply(copy.deepcopy(r20), quick), pk.apply(copy.deepcopy(r20), full)
    assert torch.equal(a(X), b(X))
    with pytest.raises(pk.PlanMismatchError, match="made for another model"):
        pk.apply(r32, quick)
