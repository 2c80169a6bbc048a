"""Rebuild an architecture from a file's description, through allow-listed registries only.

A description never names code to import. It names a model in one of four registries:

- ``{"name": "resnet20", "kwargs": {...}}``: prunekit's registry (``torchvision:<name>`` included);
- ``{"library": "torchvision", "name": "resnet50", "kwargs": {...}}``: ``torchvision.models.get_model``
  (``weights=None``: nothing is downloaded, the file's weights are loaded afterwards);
- ``{"library": "timm", "name": "resnet18", "kwargs": {...}}``: ``timm.create_model`` with
  ``pretrained=False`` (options that read files or URLs are refused);
- ``{"library": "transformers", "class": "GPT2LMHeadModel", "config": {...}}``: a class exported by the
  ``transformers`` package (a ``PreTrainedModel`` or an ``Auto*`` class), built from a config whose
  ``model_type`` is in transformers' own config registry; remote code is never trusted.

Files written before this allow-list may say ``{"factory": "torchvision.models:resnet50"}``,
``{"factory": "timm:create_model", "kwargs": {"model_name": ...}}`` or
``{"factory": "prunekit.models:create", "kwargs": {"name": ...}}``: these map onto the registries above.
Any other factory raises :class:`ModelFileError`; the caller then passes the model or a factory itself.
"""
from __future__ import annotations

import inspect
import json
from typing import Any, Callable

from torch import nn

from ..errors import ModelFileError
from .registry import create, get_entry, spec_of

LIBRARIES = ("prunekit", "torchvision", "timm", "transformers")
# timm.create_model options that would read a file, a URL or the hub
_TIMM_REFUSED = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")
# config entries that would make transformers import code named by the config
_HF_REFUSED = ("auto_map", "trust_remote_code")
_TV_WEIGHT_ARGS = ("weights", "weights_backbone")


def _fail(source: str, what: str) -> ModelFileError:
    return ModelFileError(f"{source}: {what}. Loading never imports code a file names: pass model=<an unpruned "
                          "instance> or factory=<a callable building it> explicitly")


def _kwargs(arch: dict, source: str) -> dict[str, Any]:
    kw = arch.get("kwargs", {})
    if not isinstance(kw, dict) or not all(isinstance(k, str) for k in kw):
        raise ModelFileError(f"{source}: architecture 'kwargs' must be a JSON object, got {kw!r}")
    return dict(kw)


def _name(arch: dict, key: str, source: str) -> str:
    name = arch.get(key)
    if not isinstance(name, str) or not name:
        raise ModelFileError(f"{source}: architecture {key!r} must be a non-empty string, got {name!r}")
    return name


def _torchvision(name: str, kw: dict[str, Any], source: str) -> nn.Module:
    import torchvision.models as tvm

    if name not in tvm.list_models():
        raise _fail(source, f"{name!r} is not a torchvision model (valid: torchvision.models.list_models())")
    params = inspect.signature(tvm.get_model_builder(name)).parameters
    for arg in _TV_WEIGHT_ARGS:
        if kw.get(arg) is not None:
            raise ModelFileError(f"{source}: torchvision kwargs {arg}={kw[arg]!r} would download weights; the "
                                 "file's own weights are loaded instead, so the description must not ask for them")
        if arg in params:
            kw[arg] = None
    return tvm.get_model(name, **kw)


def _timm(name: str, kw: dict[str, Any], source: str) -> nn.Module:
    import timm

    if not timm.is_model(name):
        raise _fail(source, f"{name!r} is not a timm model (valid: timm.list_models())")
    refused = [k for k in _TIMM_REFUSED if kw.get(k)]
    if refused:
        raise ModelFileError(f"{source}: timm kwargs {refused} would read weights from a file or the network; the "
                             "file's own weights are loaded instead")
    kw = {k: v for k, v in kw.items() if k not in _TIMM_REFUSED}
    return timm.create_model(name, pretrained=False, **kw)


def _transformers(arch: dict, source: str) -> nn.Module:
    import transformers
    from transformers import AutoConfig, PreTrainedModel
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    cls_name = _name(arch, "class", source)
    cls = getattr(transformers, cls_name, None) if cls_name.isidentifier() else None
    is_auto = isinstance(cls, type) and issubclass(cls, _BaseAutoModelClass)
    if not (is_auto or (isinstance(cls, type) and issubclass(cls, PreTrainedModel))):
        raise _fail(source, f"{cls_name!r} is not a model class exported by transformers")
    config = arch.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ModelFileError(f"{source}: a transformers architecture needs 'config', a JSON object with 'model_type'")
    refused = [k for k in _HF_REFUSED if k in config]
    if refused:
        raise _fail(source, f"the transformers config asks for remote code ({refused})")
    cfg = dict(config)
    model_type = cfg.pop("model_type")
    try:
        conf = AutoConfig.for_model(model_type, **cfg)
    except ValueError as e:
        raise _fail(source, f"transformers knows no model_type {model_type!r} ({e})") from e
    return cls.from_config(conf, trust_remote_code=False) if is_auto else cls(conf)


def _legacy(arch: dict, source: str) -> tuple[str, dict]:
    """Map an old ``{"factory": "module:callable"}`` description onto the registries, or refuse it."""
    factory = _name(arch, "factory", source)
    module, _, fn = factory.partition(":")
    kw = _kwargs(arch, source)
    if module == "torchvision.models" or module.startswith("torchvision.models."):
        return "torchvision", {"name": fn, "kwargs": kw}
    if module in ("timm", "timm.models") and fn == "create_model":
        name = kw.pop("model_name", None)
        return "timm", {"name": name, "kwargs": kw}
    if module in ("prunekit.models", "prunekit.models.registry") and fn == "create":
        return "prunekit", {"name": kw.pop("name", None), "kwargs": kw}
    raise _fail(source, f"model factory {factory!r} is not in an allow-listed registry (prunekit, torchvision, timm, "
                        "transformers)")


def build_arch(arch: Any, factory: Callable[..., nn.Module] | None = None, source: str = "the file") -> nn.Module:
    """A fresh instance of the architecture a description names (weights random).

    Args:
        arch: the description (see the module docstring).
        factory: the caller's own builder; when given it is called with the description's ``kwargs`` and no
            registry is consulted.
        source: what to name in errors (usually the file).

    Returns:
        The unpruned model.

    Example:
        >>> build_arch({"name": "lenet5", "kwargs": {"num_classes": 10, "in_channels": 1}})  # doctest: +SKIP
    """
    if not isinstance(arch, dict):
        raise ModelFileError(f"{source}: the architecture description must be a JSON object, got {arch!r}")
    if factory is not None:
        if not callable(factory):
            raise TypeError(f"factory must be a callable returning an nn.Module, got {type(factory).__name__}")
        return factory(**_kwargs(arch, source))
    library = arch.get("library", "prunekit")
    if "factory" in arch:
        library, arch = _legacy(arch, source)
    if library not in LIBRARIES:
        raise _fail(source, f"unknown model library {library!r} (valid: {', '.join(LIBRARIES)})")
    try:
        if library == "transformers":
            return _transformers(arch, source)
        name, kw = _name(arch, "name", source), _kwargs(arch, source)
        if library == "torchvision":
            return _torchvision(name, kw, source)
        if library == "timm":
            return _timm(name, kw, source)
        try:
            get_entry(name)
        except ValueError as e:
            raise _fail(source, str(e)) from e
        return create(name, **kw)
    except ModelFileError:
        raise
    except (TypeError, ValueError, KeyError, RuntimeError) as e:  # bad kwargs or name in the description
        raise ModelFileError(f"{source}: cannot build the {library} model it describes: {e}") from e


def describe_arch(model: nn.Module) -> dict | None:
    """The description that rebuilds ``model`` through a registry, when prunekit can tell it: a model built by
    ``prunekit.models.create``, or a transformers model of a class transformers exports. Otherwise None."""
    spec = spec_of(model)
    if spec is not None and hasattr(spec, "to_dict"):
        return spec.to_dict()
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_json_string") and type(model).__module__.startswith("transformers."):
        import transformers

        if getattr(transformers, type(model).__name__, None) is type(model):
            conf = json.loads(config.to_json_string(use_diff=False))
            return {"library": "transformers", "class": type(model).__name__, "config": conf}
    return None
