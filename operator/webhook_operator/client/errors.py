"""Everything the client raises derives from ClientError; each says what to do about it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhook_operator.client.status import EventStatus


class ClientError(Exception):
    """Base of the client's errors."""


class ConfigError(ClientError):
    """No usable cluster configuration (no kubeconfig, not in a pod, or an unknown context)."""


class InvalidEventError(ClientError, ValueError):
    """The event would be refused (by this client, the API server or the operator): nothing was created."""


class KeyConflictError(ClientError):
    """The idempotency key was already used for a different event: nothing was created."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


class ApiError(ClientError):
    """The API server refused the request, or could not be reached (`status` 0) after retries."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{message} ({status} {reason})" if status else message)
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(ApiError):
    pass


class AlreadyExistsError(ApiError):
    pass


class WaitTimeoutError(ClientError, TimeoutError):
    """The event did not finish in time; `status` is the last one seen."""

    def __init__(self, status: EventStatus, timeout: float) -> None:
        progress = (
            f"{status.pending} deliveries pending: {status.message or status.reason}"
            if status.reason
            else "it has no status yet: is the operator running and serving its namespace?"
        )
        super().__init__(
            f"webhookevent {status.name} was not Delivered or Failed within {timeout:g} s; {progress}"
        )
        self.status = status
