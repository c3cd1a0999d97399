"""One error body everywhere: `{"error": {"code": "...", "message": "..."}}`, with a stable
snake_case code a program can branch on and a message a person can act on. Validation errors
add `details` (where and what); a 503 keeps its Retry-After. The handlers here cover the
exceptions of core.errors, every HTTPException (routes, dependencies, routing's 404 and 405)
and FastAPI's request validation, so no other shape leaves the server."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from core.errors import BadInput, BadVideo, ModelUnavailable, NotFound, TransientError

# Seconds a client should wait before retrying after a database or broker outage.
RETRY_AFTER_S = 5
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 406: "not_acceptable", 413: "payload_too_large",
         415: "unsupported_media_type", 416: "range_not_satisfiable",
         422: "validation_error", 500: "internal_error", 503: "unavailable"}


class ApiError(HTTPException):
    """An HTTP error with its own code (e.g. `invalid_page_token`), when the status's
    generic one says too little."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(status, message, headers)
        self.code = code


def error_body(code: str, message: str, details: list | None = None) -> dict:
    inner = {"code": code, "message": message}
    return {"error": inner | {"details": details} if details is not None else inner}


def _respond(status: int, code: str, message: str, headers: dict | None = None,
             details: list | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, details), status_code=status,
                        headers=headers)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    code = getattr(exc, "code", None) or CODES.get(exc.status_code, "error")
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed(request)}
    return _respond(exc.status_code, code, str(exc.detail), headers)


def _allowed(request: Request) -> str:
    """Every method of the path: Starlette's 405 names only those of the first route that
    matched it (GET and POST /v1/videos are two routes)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if route.matches({**request.scope, "method": "GET"})[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _where(loc) -> str:
    return ".".join(str(part) for part in loc)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    details = [{"where": _where(e.get("loc", ())), "message": e.get("msg", "invalid")}
               for e in exc.errors()]
    message = "; ".join(f"{d['where']}: {d['message']}" for d in details) or "invalid request"
    return _respond(422, "validation_error", message, details=details)


def _mapped(status: int, code: str, headers: dict | None = None):
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        return _respond(status, code, str(exc), headers)
    return handler


async def _internal(_request: Request, _exc: Exception) -> JSONResponse:
    return _respond(500, "internal_error", "internal error; the server log has the details")


def install(app: FastAPI) -> None:
    """Every handler; more specific exception classes win over their bases."""
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(NotFound, _mapped(404, "not_found"))
    app.add_exception_handler(BadVideo, _mapped(422, "invalid_video"))
    app.add_exception_handler(BadInput, _mapped(422, "validation_error"))
    app.add_exception_handler(ModelUnavailable, _mapped(503, "model_unavailable"))
    app.add_exception_handler(TransientError, _mapped(
        503, "unavailable", {"Retry-After": str(RETRY_AFTER_S)}))
    app.add_exception_handler(Exception, _internal)


ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}
FOREIGN = ("#/components/schemas/HTTPValidationError", ERROR_REF["$ref"])
# Every /v1 operation may meet these: no key, a parameter out of bounds, a database outage.
EVERYWHERE = {"401": "no or bad API key", "422": "bad input",
              "503": "a dependency is unavailable; retry after Retry-After seconds"}


def _is_error_body(response: dict) -> bool:
    content = response.get("content")
    return not content or any(m.get("schema", {}).get("$ref") in FOREIGN
                              for m in content.values())


def document(schema: dict) -> dict:
    """The OpenAPI document says what is served: every error answer of a route is the one
    JSON error body (FastAPI would declare a text route's errors as text, and its own
    validation shape), and every /v1 operation lists the errors any of them can answer."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if path.startswith("/v1/"):
                for status, text in EVERYWHERE.items():
                    responses.setdefault(status, {"description": text})
            for status, response in responses.items():
                if int(status) >= 400 and _is_error_body(response):
                    response["content"] = {"application/json": {"schema": ERROR_REF}}
    return schema
