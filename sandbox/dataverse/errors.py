"""Web API errors as Dataverse words them: ``{"error": {"code": "0x...", "message": "..."}}``."""

from __future__ import annotations

from starlette.responses import JSONResponse

# 0x80060888: the code Dataverse gives every OData query/payload error it cannot process
BAD_QUERY = "0x80060888"
OBJECT_DOES_NOT_EXIST = "0x80040217"
RESOURCE_NOT_FOUND = "0x8006088a"
UNEXPECTED = "0x80040216"
VERSION_MISMATCH = "0x80060882"
DUPLICATE_RECORD = "0x80040237"
LENGTH_EXCEEDED = "0x80044331"
OPTION_OUT_OF_RANGE = "0x8004431a"
REQUEST_LIMIT = "0x80072322"
CONCURRENCY_LIMIT = "0x80072326"

JSON_MEDIA_TYPE = "application/json; odata.metadata=minimal"


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": self.code, "message": self.message}},
            status_code=self.status,
            headers={"OData-Version": "4.0", **self.headers},
            media_type=JSON_MEDIA_TYPE,
        )


def bad_query(message: str) -> ApiError:
    return ApiError(400, BAD_QUERY, message)


def record_not_found(logical_name: str, record_id: str) -> ApiError:
    return ApiError(
        404, OBJECT_DOES_NOT_EXIST, f"Entity '{logical_name}' With Id = {record_id} Does Not Exist"
    )


def segment_not_found(segment: str) -> ApiError:
    return ApiError(404, RESOURCE_NOT_FOUND, f"Resource not found for the segment '{segment}'.")


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, BAD_QUERY, f"The requested resource does not support http method '{method}'."
    )
