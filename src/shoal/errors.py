"""One error family.

Raise a :class:`ShoalError` subclass anywhere; the single handler in ``app.py`` renders it as
``{"detail": <message>, "code": <code>, **extra}`` with the given status and headers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class ShoalError(Exception):
    """An error a client can act on: a human message, an HTTP status and a stable code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(
        self,
        message: str,
        *,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = dict(extra or {})
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "code": self.code, **self.extra}


class BadRequest(ShoalError):
    status = 400
    code = "bad_request"


class InvalidCursor(BadRequest):
    code = "invalid_cursor"


class PathOutsideWorkspace(BadRequest):
    code = "path_outside_workspace"


class Unauthorized(ShoalError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "Authentication required.", **kwargs: Any) -> None:
        headers = {"WWW-Authenticate": "Bearer", **(kwargs.pop("headers", None) or {})}
        super().__init__(message, headers=headers, **kwargs)


class PaymentRequired(ShoalError):
    status = 402
    code = "billing_limit"


class ModelNotAllowed(PaymentRequired):
    code = "model_not_allowed"


class Forbidden(ShoalError):
    status = 403
    code = "forbidden"


class NotFound(ShoalError):
    """Not found — or not yours. Never reveals whether another tenant's id exists."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class Conflict(ShoalError):
    status = 409
    code = "conflict"


class RunActive(Conflict):
    code = "run_active"


class IdempotencyConflict(Conflict):
    code = "idempotency_conflict"


class Gone(ShoalError):
    status = 410
    code = "events_expired"


class PayloadTooLarge(ShoalError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(ShoalError):
    """Payload validation (422). ``errors`` is a list of ``{loc, msg}``."""

    status = 422
    code = "validation_error"

    def __init__(self, message: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, extra={"errors": errors or []})

    @classmethod
    def from_pydantic(cls, raw: Sequence[Mapping[str, Any]]) -> ValidationFailed:
        """From pydantic/FastAPI error dicts: ``detail`` names the first problem
        (``field: message``), or says plainly that the body is not JSON at all."""
        errors = [
            {"loc": [str(part) for part in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in raw
        ]
        if any(err.get("type") == "json_invalid" for err in raw):
            return cls("The request body is not valid JSON.", errors=errors)
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(first["loc"][1:] if len(first["loc"]) > 1 else first["loc"])
        return cls(f"{where}: {first['msg']}" if where else str(first["msg"]), errors=errors)


class RateLimited(ShoalError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, **kwargs: Any) -> None:
        headers = {"Retry-After": str(max(1, retry_after)), **(kwargs.pop("headers", None) or {})}
        super().__init__(message, headers=headers, **kwargs)
        self.retry_after = retry_after


class ConcurrencyLimit(RateLimited):
    code = "concurrency_limit"


class DependencyUnavailable(ShoalError):
    status = 503
    code = "dependency_unavailable"


class ConfigError(Exception):
    """Start-up configuration problems; each entry is one readable line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
