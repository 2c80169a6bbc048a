"""The library workflow: one config object in, one result object out, for the whole story of a run (base ->
prune -> recover -> quantize -> measure -> save -> report). The CLI, the demo and the benchmarks call it.
Pretrained transformers pruned by a calibration method (wanda, sparsegpt, flap, depth, ...) go through its
sibling `run_hf_workflow(HFWorkflowConfig(...))` (load -> calibrate -> prune -> distil -> measure -> save -> report).

Example:
    >>> from prunekit.workflow import DataConfig, ModelConfig, PruneConfig, WorkflowConfig, run_workflow
    >>> cfg = WorkflowConfig(model=ModelConfig("resnet20", width=0.5), data=DataConfig("fashion-mnist"),
    ...                      prune=PruneConfig(method="srr", target={"macs": 0.5}), out="runs/srr50")
    >>> result = run_workflow(cfg)
    >>> result.report["summary"]["macs_kept"] <= 0.5
"""
from .base import RunData, cache_root, get_base, load_data, train_base
from .config import (QUANTIZERS, BaseConfig, DataConfig, ModelConfig, PruneConfig, QuantizeConfig, RecoverConfig,
                     WorkflowConfig, register_quantizer)
from .models import (MODEL_FILE, ModelSourceError, example_input, load_model, load_model_with_shape,
                     looks_like_path, measure_model, model_kwargs, read_json, save_model)
from .outputs import (NothingToResumeError, OutputConflictError, OutputExistsError, check_output_file,
                      earlier_outputs, prepare_output_dir, register_output_names, removed_on_failure)
from .run import WorkflowResult, check_workflow, measure, run_workflow, workflow_methods
from .hf import HFWorkflowConfig, HFWorkflowResult, TextConfig, run_hf_workflow, text_splits

__all__ = [
    "WorkflowConfig", "ModelConfig", "DataConfig", "BaseConfig", "PruneConfig", "RecoverConfig", "QuantizeConfig",
    "WorkflowResult", "run_workflow", "check_workflow", "workflow_methods", "register_quantizer", "QUANTIZERS",
    "HFWorkflowConfig", "HFWorkflowResult", "TextConfig", "run_hf_workflow", "text_splits",
    "RunData", "load_data", "get_base", "train_base", "cache_root", "measure",
    "MODEL_FILE", "ModelSourceError", "example_input", "load_model", "load_model_with_shape", "looks_like_path",
    "measure_model", "model_kwargs", "read_json", "save_model",
    "OutputExistsError", "OutputConflictError", "NothingToResumeError", "prepare_output_dir", "check_output_file",
    "earlier_outputs", "register_output_names", "removed_on_failure",
]
