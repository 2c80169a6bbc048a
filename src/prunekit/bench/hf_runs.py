"""One row of the transformer suites: a calibration method on a pretrained (or saved) transformer through
`run_hf_workflow`, with the suite's text, distillation budget and latency settings."""
from __future__ import annotations

import time
from typing import Any

from ..transformers.distill import DistillConfig
from ..workflow import HFWorkflowConfig, HFWorkflowResult, TextConfig, run_hf_workflow
from .config import BenchConfig


def log(msg: str) -> None:
    print(f"[bench transformers {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def text_config(opts: dict[str, Any]) -> TextConfig:
    """The text every row calibrates, distils and is scored on."""
    return TextConfig(source=opts["text"], calib_samples=opts["calib_samples"], seq_len=opts["seq_len"],
                      calib_batch=opts["calib_batch"], heldout=opts["heldout"])


def hf_run(model: str, method: str, options: dict[str, Any], opts: dict[str, Any], cfg: BenchConfig,
           distil: bool = False, timed: bool = False) -> HFWorkflowResult:
    """One row: `method` with `options` on `model` (hf:<folder or package>) through run_hf_workflow,
    distilled with the suite's budget when `distil`, dense and pruned timed in alternation when `timed`."""
    dcfg = (DistillConfig(steps=opts["distill_steps"], batch_size=opts["distill_batch"], lr=opts["distill_lr"],
                          seed=cfg.seeds[0]) if distil else None)
    return run_hf_workflow(HFWorkflowConfig(
        model=model, method=method, options=options, text=text_config(opts), distill=dcfg,
        latency_runs=cfg.latency_runs if timed else 0, latency_batch=cfg.latency_batches[0],
        latency_rounds=opts["latency_rounds"], latency_threads=int(cfg.threads or 1), seed=cfg.seeds[0]), log=log)
