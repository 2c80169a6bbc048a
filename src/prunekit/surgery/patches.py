"""The attribute-patching table: after `apply` slices a module's tensors, its patch brings the module's
attributes (in_channels, hidden_size, num_heads, ...) in line with the new shapes.

One function per module type, looked up along the module's class hierarchy (the most specific registered
class wins), so users extend it for their own modules with `register_patch` instead of editing prunekit:

    import prunekit as pk

    class Scaled(nn.Module):           # a custom module that stores its width under a name of its own
        def __init__(self, n):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(n))
            self.units = n
        def forward(self, x):
            return x.reshape(x.shape[0], self.units, -1).mul(self.gain[:, None]).flatten(1)

    @pk.register_patch(Scaled)
    def _(module, ctx):
        module.units = module.gain.shape[0]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..graph.rnn import rnn_patch


@dataclass
class PatchContext:
    """What a patch function learns about the module it fixes up.

    name: the module's qualified name in the model ("" for the root).
    removed: {(tensor name, dim): removed indices} for this module's own parameters and buffers.
    old_shapes: shapes of those tensors before the plan was applied.
    splits: the plan's view patches recorded inside this module or its children, each
        {"module", "old", "new", "factors", "kind"} (kind "split": head_dim-like sizes, "heads": head
        counts, "width": a width written into a view's shape).
    """

    name: str
    removed: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    old_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    splits: list[dict] = field(default_factory=list)


PatchFn = Callable[[nn.Module, PatchContext], None]
_PATCHES: dict[type, PatchFn] = {}
_USER: set[type] = set()  # types registered from outside prunekit: the name heuristics leave them alone


def register_patch(module_type: type, fn: PatchFn | None = None, *, builtin: bool = False):
    """Teach `pk.apply` how to update the attributes of `module_type` after its tensors were sliced.

    Args:
        module_type: an `nn.Module` subclass; subclasses of it use the same patch unless they have their own.
        fn: `fn(module, ctx: PatchContext) -> None`, called once per instance that the plan touched
            (its tensors were sliced or a view recorded in it changed size). Omit it to use
            `register_patch(T)` as a decorator.
        builtin: internal: prunekit's own patches, which the attribute-name heuristics may complement.

    Returns:
        `fn` (or the decorator).

    Raises:
        TypeError: module_type is not an nn.Module subclass or fn is not callable.

    Example:
        >>> @pk.register_patch(MyBlock)
        ... def _(module, ctx):
        ...     module.width = module.proj.weight.shape[0]

    A module with a registered patch from outside prunekit is patched only by it: the heuristics that guess
    head_dim / num_heads / width attributes by name skip it, and `ctx.splits` hands it those sizes instead.
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise TypeError(f"register_patch: module_type must be an nn.Module subclass, got {module_type!r}")

    def add(f: PatchFn) -> PatchFn:
        if not callable(f):
            raise TypeError(f"register_patch({module_type.__name__}): fn must be callable, got {f!r}")
        _PATCHES[module_type] = f
        if builtin:
            _USER.discard(module_type)
        else:
            _USER.add(module_type)
        return f

    return add if fn is None else add(fn)


def unregister_patch(module_type: type) -> None:
    """Remove the patch registered for exactly `module_type` (KeyError naming it if there is none)."""
    if module_type not in _PATCHES:
        raise KeyError(f"no patch registered for {module_type.__name__}; registered: "
                       f"{sorted(t.__name__ for t in _PATCHES)}")
    del _PATCHES[module_type]
    _USER.discard(module_type)


# Patches for classes of optional libraries (timm), keyed by "module.QualName" so that prunekit need not import
# the library. Like a user's patch, each runs whenever the plan touched the module or anything below it (the
# size it fixes lives in the parent, the tensors in its children) and the name heuristics leave that module alone.
_BY_NAME: dict[str, PatchFn] = {}


def _named(cls: type) -> PatchFn | None:
    return _BY_NAME.get(f"{cls.__module__}.{cls.__qualname__}")


def patch_for(module: nn.Module) -> PatchFn | None:
    """The patch of the most specific registered class in type(module)'s method resolution order."""
    for cls in type(module).__mro__:
        if cls in _PATCHES:
            return _PATCHES[cls]
        if _named(cls) is not None:
            return _named(cls)
    return None


def user_patched(module: nn.Module) -> bool:
    """Whether the module's patch runs for changes below it and replaces the heuristics: one registered from
    outside prunekit, or prunekit's patch for an optional library's class."""
    for cls in type(module).__mro__:
        if cls in _PATCHES:
            return cls in _USER
        if _named(cls) is not None:
            return True
    return False


ModelHook = Callable[[nn.Module], None]
_MODEL_HOOKS: list[tuple[ModelHook, ModelHook]] = []


def register_model_hooks(before: ModelHook, after: ModelHook) -> None:
    """Glue for a model library (prunekit.transformers.hf): `before(model)` runs after slicing, before the
    module patches (to register patches for the library's types); `after(model)` once every module is
    patched (to update the model's config). Each must return at once for models it does not know."""
    if not (callable(before) and callable(after)):
        raise TypeError(f"register_model_hooks: before and after must be callable, got {before!r}, {after!r}")
    if (before, after) not in _MODEL_HOOKS:
        _MODEL_HOOKS.append((before, after))


def model_hooks() -> list[tuple[ModelHook, ModelHook]]:
    """The registered (before, after) model hooks, in registration order."""
    return list(_MODEL_HOOKS)


def registered() -> dict[type, PatchFn]:
    """A copy of the table: {module type: patch function}."""
    return dict(_PATCHES)


# ---------------------------------------------------------------- prunekit's own patches
def _conv(mod: nn.modules.conv._ConvNd, ctx: PatchContext) -> None:
    w = mod.weight
    depthwise = mod.in_channels // mod.groups == 1 and mod.groups > 1
    if mod.transposed:
        mod.in_channels = w.shape[0]
        if depthwise:
            mod.groups = w.shape[0]
        mod.out_channels = w.shape[1] * mod.groups
    else:
        per_group_out = mod.out_channels // mod.groups
        mod.out_channels = w.shape[0]
        if depthwise:
            mod.groups = w.shape[0] // per_group_out
        mod.in_channels = w.shape[1] * mod.groups


def _linear(mod: nn.Linear, ctx: PatchContext) -> None:
    mod.out_features, mod.in_features = mod.weight.shape


def _batch_norm(mod: nn.modules.batchnorm._NormBase, ctx: PatchContext) -> None:
    ref = mod.weight if mod.weight is not None else mod.running_mean
    if ref is not None:
        mod.num_features = ref.shape[0]


def _group_norm(mod: nn.GroupNorm, ctx: PatchContext) -> None:
    if mod.weight is not None:
        mod.num_channels = mod.weight.shape[0]


def _layer_norm(mod: nn.Module, ctx: PatchContext) -> None:
    if getattr(mod, "weight", None) is not None:
        mod.normalized_shape = tuple(mod.weight.shape)


def _embedding(mod: nn.Embedding, ctx: PatchContext) -> None:
    mod.num_embeddings, mod.embedding_dim = mod.weight.shape


def _prelu(mod: nn.PReLU, ctx: PatchContext) -> None:
    mod.num_parameters = mod.weight.numel()


def _mha(mod: nn.MultiheadAttention, ctx: PatchContext) -> None:
    if mod.in_proj_weight is not None:
        mod.embed_dim = mod.in_proj_weight.shape[1]
    else:
        mod.embed_dim = mod.q_proj_weight.shape[0]
        mod.kdim, mod.vdim = mod.k_proj_weight.shape[1], mod.v_proj_weight.shape[1]
    if mod._qkv_same_embed_dim:
        mod.kdim = mod.vdim = mod.embed_dim


def _first_conv(module: nn.Module, ctx: PatchContext) -> nn.modules.conv._ConvNd:
    """The first convolution in `module`, its attributes brought up to date (`apply` patches parents before
    children; _conv is idempotent)."""
    conv = next(m for m in module.modules() if isinstance(m, nn.modules.conv._ConvNd))
    _conv(conv, ctx)
    return conv


# timm modules that split a tensor into equal chunks whose size is an attribute, not a tensor size. The trace
# couples the chunks channel by channel (an equal split), so every chunk lost the same channels: these read
# the new size back from the convolutions the chunks feed or come from.
def _selective_kernel(mod: nn.Module, ctx: PatchContext) -> None:
    """SelectiveKernel: `torch.split(x, self.in_channels // self.num_paths, 1)` feeds one conv per path."""
    convs = [_first_conv(path, ctx) for path in mod.paths]
    mod.in_channels = sum(c.in_channels for c in convs) if mod.split_input else convs[0].in_channels
    mod.out_channels = convs[0].out_channels


def _res2_width(mod: nn.Module, ctx: PatchContext) -> None:
    """Res2Net / DLA Bottle2neck: `torch.split(out, self.width, 1)`, chunk i feeding `convs[i]`."""
    mod.width = _first_conv(mod.convs[0], ctx).in_channels


def _cross_stage(mod: nn.Module, ctx: PatchContext) -> None:
    """CSPNet CrossStage(3): `x.split(self.expand_chs // 2, dim=1)` halves the output of `conv_exp`."""
    mod.expand_chs = _first_conv(mod.conv_exp, ctx).out_channels


_BY_NAME.update({"timm.layers.selective_kernel.SelectiveKernel": _selective_kernel,
                 "timm.models.res2net.Bottle2neck": _res2_width, "timm.models.dla.DlaBottle2neck": _res2_width,
                 "timm.models.cspnet.CrossStage": _cross_stage, "timm.models.cspnet.CrossStage3": _cross_stage})
for _t, _f in [(nn.modules.conv._ConvNd, _conv), (nn.Linear, _linear), (nn.modules.batchnorm._NormBase, _batch_norm),
               (nn.GroupNorm, _group_norm), (nn.LayerNorm, _layer_norm), (nn.Embedding, _embedding),
               (nn.PReLU, _prelu), (nn.MultiheadAttention, _mha), (nn.RNNBase, rnn_patch),
               (nn.RNNCellBase, rnn_patch)]:
    register_patch(_t, _f, builtin=True)
if hasattr(nn, "RMSNorm"):
    register_patch(nn.RMSNorm, _layer_norm, builtin=True)
