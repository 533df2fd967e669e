"""Op kinds: the names the latency model prices, and what one torch call is and computes.

:mod:`dse.cost.op_trace` sees every torch-level call of a traced network; this module says what
such a call is (:func:`classify`: a torch function name and its arguments to one of
``OP_KINDS``) and what its arithmetic comes to (MACs and the implicit-GEMM shape of a
convolution or a linear layer, a convolution's stride, a pooling window). It is kept apart from
the tracing so that the kind names can be read (profiles, calibration, the latency model) from a
module that imports no ``dse`` module and torch only inside :func:`_conv_backend`.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

#: Op kinds the latency model knows; every runtime in a profile gives parameters for each.
#: ``pool`` is windowed pooling (max/avg with a kernel; its ``macs`` count window visits),
#: ``reduce`` is global pooling and reductions (adaptive average pooling to 1x1, mean, sum).
OP_KINDS = ("conv", "dwconv", "linear", "norm", "elementwise", "pool", "reduce", "view")
#: Optional kinds a runtime may set apart; without them the latency model uses the fallback.
#: ``conv_gemm``: a convolution the framework runs by its generic im2col + GEMM path (eager
#: PyTorch on CPU does so for small batch-1 inputs, ``torch._C._select_conv_backend`` says
#: ``Slow2d``) rather than its tuned library (oneDNN, cuDNN). ``pad``: ``F.pad`` (option-A
#: shortcuts), which eager PyTorch runs as several kernels (allocate, fill, copy), far slower
#: per element than one element-wise op.
#: ``pwconv``: a pointwise (1x1, ungrouped) convolution; the records keep kind ``conv`` (with
#: ``kernel_area`` 1) and the latency model uses a runtime's ``pwconv`` parameters when it has them:
#: on GPUs a 1x1 convolution is a plain GEMM with no input reuse across a window, so it reaches
#: another fraction of the peak than a 3x3 one.
#: ``conv_gemm_strided``: a ``conv_gemm`` record with a stride above 1 and a kernel above 1x1;
#: the records keep kind ``conv_gemm`` (with ``stride``) and the latency model uses a runtime's
#: ``conv_gemm_strided`` parameters when it has them: eager PyTorch's im2col copies whole rows
#: at stride 1 but gathers element by element otherwise (on the 2-core Xeon VM a 16->32-channel
#: 3x3 stride-2 convolution on 32x32 took 140 us against 108 us for the 32->32 stride-1 one
#: with twice the MACs; one parameter set for both predicted 58 and 94 us).
FALLBACK_KINDS = {"conv_gemm": "conv", "pad": "elementwise", "pwconv": "conv",
                  "conv_gemm_strided": "conv_gemm"}
CONV_KINDS = ("conv", "conv_gemm", "dwconv")
_GEMM_BACKENDS = frozenset({"Slow2d", "SlowDilated2d", "Slow3d", "SlowDilated3d", "SlowTranspose2d",
                            "SlowTranspose3d"})


# --- classification ------------------------------------------------------------------------

_CONV = {"conv1d", "conv2d", "conv3d"}
_LINEAR = {"linear", "addmm", "mm", "matmul", "bmm", "__matmul__"}
_NORM = {"batch_norm", "layer_norm", "group_norm", "instance_norm", "local_response_norm"}
_POOL = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
         "max_pool2d_with_indices"}
_REDUCE = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
           "adaptive_max_pool1d", "adaptive_max_pool2d", "_adaptive_avg_pool2d", "mean", "amax",
           "amin", "sum", "max", "min", "logsumexp", "adaptive_max_pool2d_with_indices"}
_VIEW = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "__getitem__", "permute",
         "transpose", "t", "expand", "narrow", "select", "unflatten", "view_as", "reshape_as",
         "dropout", "alpha_dropout", "feature_alpha_dropout", "dropout2d", "identity", "detach"}
_PAD = {"pad", "constant_pad_nd"}
# Calls that return no new tensor data worth a kernel (metadata, construction of modules).
IGNORED_CALLS = {"dim", "size", "numel", "__get__", "stride", "is_contiguous", "_set_grad_enabled",
                 "__len__", "__bool__", "item", "tolist", "__format__", "__repr__", "data_ptr",
                 "element_size", "__hash__", "__eq__"}


def classify(name: str, args: Sequence[Any], kwargs: dict) -> str:
    """Op kind for a torch function name (dropout and slicing in eval mode are views)."""
    base = name.rstrip("_") if not name.startswith("__") else name
    if base in _CONV:
        groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
        x = args[0]
        cin = x.shape[1] if x.dim() > 1 else 1
        if groups > 1 and groups == cin:
            return "dwconv"
        return "conv_gemm" if _conv_backend(args, kwargs) in _GEMM_BACKENDS else "conv"
    if base in _LINEAR:
        return "linear"
    if base in _NORM:
        return "norm"
    if base in _POOL:
        return "pool"
    if base in _REDUCE:
        return "reduce"
    if base in _VIEW:
        return "view"
    if base in _PAD:
        return "pad"
    return "elementwise"


def _conv_args(args: Sequence[Any], kwargs: dict) -> dict[str, Any]:
    """A convolution call's arguments by name (positional or keyword)."""
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    return dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}


def is_strided_im2col(r: Any) -> bool:
    """Whether a record (or kernel) is a strided im2col convolution: kind ``conv_gemm``, a
    stride above 1 and a kernel above 1x1 (``conv_gemm_strided``, see :data:`FALLBACK_KINDS`)."""
    return r.kind == "conv_gemm" and r.stride > 1 and r.kernel_area > 1


def _conv_backend(args: Sequence[Any], kwargs: dict) -> str:
    """The implementation eager PyTorch picks for this convolution ('' when unknown)."""
    import torch

    values = _conv_args(args, kwargs)
    x, w = values["input"], values["weight"]
    dims = w.dim() - 2

    def tup(v: Any, default: int) -> list[int]:
        v = default if v is None else v
        return list(v) if isinstance(v, (tuple, list)) else [int(v)] * dims

    padding = values.get("padding", 0)
    if isinstance(padding, str):  # 'same' / 'valid' take another path; call it the default
        return ""
    try:
        backend = torch._C._select_conv_backend(
            x, w, values.get("bias"), tup(values.get("stride"), 1), tup(padding, 0),
            tup(values.get("dilation"), 1), False, [0] * dims, int(values.get("groups", 1) or 1), None)
    except (AttributeError, RuntimeError, TypeError):  # private API: absent or changed
        return ""
    return str(backend).rsplit(".", 1)[-1]


def conv_record(name: str, kind: str, args, kwargs, out) -> tuple[int, tuple[int, int, int]]:
    """A convolution call's MACs and implicit-GEMM shape (M, N, K); a depthwise one is
    (spatial, 1, kernel area) per channel."""
    w = args[1]
    groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
    kernel = math.prod(w.shape[2:])
    cin_per_group = w.shape[1]
    macs = out.numel() * cin_per_group * kernel
    spatial = math.prod(out.shape[2:]) * out.shape[0]
    if kind == "dwconv":
        return macs, (spatial, 1, kernel)
    return macs, (spatial, w.shape[0] // groups, cin_per_group * kernel)


def conv_stride(args: Sequence[Any], kwargs: dict) -> int:
    """A convolution call's stride (the largest over its dimensions; 1 when not given)."""
    stride = _conv_args(args, kwargs).get("stride") or 1
    return int(max(stride) if isinstance(stride, (tuple, list)) else stride)


def linear_record(name: str, args, out) -> tuple[int, tuple[int, int, int]]:
    """A linear or matrix-product call's MACs and GEMM shape (M, N, K)."""
    if name in ("linear",):
        k = args[0].shape[-1]
    elif name in ("addmm",):
        k = args[1].shape[-1]
    else:  # mm, matmul, bmm
        k = args[0].shape[-1]
    n = out.shape[-1] if out.dim() else 1
    m = out.numel() // max(n, 1)
    return out.numel() * k, (m, n, k)


def pool_window(args, kwargs) -> int:
    """Elements a windowed pooling call visits per output (its kernel's area or volume)."""
    kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else 1)
    dims = max(args[0].dim() - 2, 1)
    kernel = kernel if isinstance(kernel, (tuple, list)) else (kernel,) * dims
    return math.prod(kernel)
