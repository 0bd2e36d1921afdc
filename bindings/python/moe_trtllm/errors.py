"""Exceptions of moe_trtllm: one class per library status, all subclasses of MoeError."""

__all__ = [
    "MoeError", "InvalidArgumentError", "NotSupportedError", "OutOfMemoryError", "CudaError",
    "NoDeviceError", "InsufficientWorkspaceError", "VersionMismatchError", "InvalidConfigError",
    "InternalError", "STATUS_NAMES", "error_from_status",
]

#: status value -> name (the C macro without the MOE_STATUS_ prefix)
STATUS_NAMES = {
    0: "SUCCESS",
    1: "INVALID_ARGUMENT",
    2: "NOT_SUPPORTED",
    3: "OUT_OF_MEMORY",
    4: "CUDA_ERROR",
    5: "NO_DEVICE",
    6: "INSUFFICIENT_WORKSPACE",
    7: "VERSION_MISMATCH",
    8: "INVALID_CONFIG",
    99: "INTERNAL",
}


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


_CLASSES = {
    1: InvalidArgumentError,
    2: NotSupportedError,
    3: OutOfMemoryError,
    4: CudaError,
    5: NoDeviceError,
    6: InsufficientWorkspaceError,
    7: VersionMismatchError,
    8: InvalidConfigError,
    99: InternalError,
}


def error_from_status(status, message):
    """The exception instance for a status (used by the C module to raise)."""
    return _CLASSES.get(int(status), MoeError)(status, message)
