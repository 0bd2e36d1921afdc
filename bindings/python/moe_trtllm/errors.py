"""Exceptions of moe_trtllm: one class per library status, all subclasses of MoeError."""

import re

from . import core as _core

__all__ = [
    "MoeError", "InvalidArgumentError", "NotSupportedError", "OutOfMemoryError", "CudaError",
    "NoDeviceError", "InsufficientWorkspaceError", "VersionMismatchError", "InvalidConfigError",
    "InternalError", "RunnerClosedError", "STATUS_NAMES", "error_from_status", "dtype_name",
]

#: status value -> name (the C macro without the MOE_STATUS_ prefix), from the header's
#: constants as SWIG wraps them.
STATUS_NAMES = {getattr(_core, _n): _n[len("STATUS_"):] for _n in dir(_core)
                if _n.startswith("STATUS_")}

# DLPack dtype code -> name stem (kDLFloat -> "float" + bits; the float8/6/4 codes name their
# format, from the header's constant names: DL_FLOAT8_E4M3FN -> "float8_e4m3fn").
_DL_STEMS = {_core.DL_INT: "int", _core.DL_UINT: "uint", _core.DL_FLOAT: "float",
             _core.DL_BFLOAT: "bfloat", _core.DL_COMPLEX: "complex"}
_DL_FIXED = {getattr(_core, _n): _n[3:].lower() for _n in dir(_core)
             if _n.startswith(("DL_FLOAT8_", "DL_FLOAT6_", "DL_FLOAT4_"))}
_DL_FIXED[_core.DL_BOOL] = "bool"


def dtype_name(code, bits, lanes=1):
    """Name of a DLPack dtype: (2, 32) -> "float32", (4, 16) -> "bfloat16"."""
    code, bits, lanes = int(code), int(bits), int(lanes)
    if code in _DL_FIXED:
        name = _DL_FIXED[code]
    elif code in _DL_STEMS:
        name = f"{_DL_STEMS[code]}{bits}"
    else:
        name = f"(DLPack code {code}, {bits} bits)"
    return name if lanes == 1 else f"{name}x{lanes}"


_DTYPE_RE = re.compile(r"\(code (\d+), bits (\d+), lanes (\d+)\)")


def _readable(message):
    """The library's message with DLPack dtype triples written as names."""
    return _DTYPE_RE.sub(lambda m: dtype_name(*m.groups()), message)


class MoeError(Exception):
    """A failed library call.

    Attributes:
        status: the library's status code (an int, e.g. 1 for INVALID_ARGUMENT).
        status_name: its name ("INVALID_ARGUMENT").
        message: the library's message (moe_get_last_error() of the failing call).
    """

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, "UNKNOWN")
        self.message = message
        super().__init__(status, message)

    def __str__(self):
        return f"{self.message} [{self.status_name} ({self.status})]"


class InvalidArgumentError(MoeError, ValueError):
    """MOE_STATUS_INVALID_ARGUMENT: an argument is None, out of range or mismatched."""


class NotSupportedError(MoeError):
    """MOE_STATUS_NOT_SUPPORTED: valid but beyond this build's limits."""


class OutOfMemoryError(MoeError, MemoryError):
    """MOE_STATUS_OUT_OF_MEMORY."""


class CudaError(MoeError):
    """MOE_STATUS_CUDA_ERROR: a CUDA call failed (the message has the CUDA text)."""


class NoDeviceError(MoeError):
    """MOE_STATUS_NO_DEVICE: no usable CUDA device or driver."""


class InsufficientWorkspaceError(MoeError):
    """MOE_STATUS_INSUFFICIENT_WORKSPACE: the workspace is smaller than required."""


class VersionMismatchError(MoeError):
    """MOE_STATUS_VERSION_MISMATCH."""


class InvalidConfigError(MoeError):
    """MOE_STATUS_INVALID_CONFIG: unknown config, invalid for the problem, or not the plan's."""


class InternalError(MoeError):
    """MOE_STATUS_INTERNAL: a bug in the library."""


class RunnerClosedError(InvalidArgumentError):
    """A call on a Runner after close() (status INVALID_ARGUMENT)."""


_CLASSES = {
    _core.STATUS_INVALID_ARGUMENT: InvalidArgumentError,
    _core.STATUS_NOT_SUPPORTED: NotSupportedError,
    _core.STATUS_OUT_OF_MEMORY: OutOfMemoryError,
    _core.STATUS_CUDA_ERROR: CudaError,
    _core.STATUS_NO_DEVICE: NoDeviceError,
    _core.STATUS_INSUFFICIENT_WORKSPACE: InsufficientWorkspaceError,
    _core.STATUS_VERSION_MISMATCH: VersionMismatchError,
    _core.STATUS_INVALID_CONFIG: InvalidConfigError,
    _core.STATUS_INTERNAL: InternalError,
}


def error_from_status(status, message):
    """The exception instance for a status (used by the C module to raise); DLPack dtype codes
    in the message are written as names ("float32")."""
    return _CLASSES.get(int(status), MoeError)(status, _readable(message))
