"""The API's error answers: ``{"status", "code", "message", "details"?}`` (reference §1.2)."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


class ApiError(Exception):
    """An error answer of the API: ``{"status", "code", "message", "details"?}``."""

    def __init__(self, status: int, code: str, message: str, details: Json | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> Json:
        if self.status == 500:  # the wrapper's sanitisation
            return {"status": 500, "code": self.code or "internal_error", "message": "Internal server error"}
        body: Json = {"status": self.status, "code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def huma_error(message: str, status: int = 422) -> ApiError:
    """huma's validation answer: an empty code and ``validation failed: <first error>``."""
    return ApiError(status, "", f"validation failed: {message}")


def pipeline_not_found(pipeline_id: str) -> ApiError:
    """The 404 of GET /pipeline/{id} (shared by health, delete and the simulator's own routes)."""
    return ApiError(404, "not_found", f'pipeline with id "{pipeline_id}" does not exist',
                    {"pipeline_id": pipeline_id, "error": "load pipeline: no pipeline with given id exists"})
