"""The FastAPI app: ``POST /v1/translate``, ``GET /v1/model``, ``/healthz``, ``/readyz`` and the
page at ``/``, with the OpenAPI description at ``/openapi.json`` and ``/docs``.

Every error is a JSON ``ErrorBody`` (``{"error": ..., "field": ...}``) naming the field at
fault: 400 for a body that is not JSON (or not UTF-8), 401 without the API key, 413 for a
request over ``max_sentences`` or ``max_chars`` (or a body too large to hold them), 422 for a
wrong type, an unknown or out-of-range option, or empty text, 503 with ``Retry-After`` when
the queue is full. ``Guard``, a plain ASGI middleware, checks the key and the body's size
before anything is parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import math
import os
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from seq2seq.errors import UserError
from seq2seq.inference.translator import Translator, clean_source
from seq2seq.serving.api import (
    REQUEST_OPTIONS,
    ErrorBody,
    TranslateRequest,
    TranslateResponse,
    check_language,
    option_key,
    request_decoding,
)
from seq2seq.serving.batching import Batcher, Job, QueueFull

API_KEY_VARIABLE = "SEQ2SEQ_API_KEY"
OPEN_PATHS = ("/healthz",)  # answered without the API key
OPTION_NAMES = (*REQUEST_OPTIONS, "tgt_lang")
UNION_BRANCHES = (
    "str",
    "list[str]",
    "float",
    "int",
    "bool",
)  # how pydantic names a union's members in a location
PAGE = Path(__file__).resolve().parent / "page.html"


class ApiError(Exception):
    """An answer other than 200: its status, the field at fault and the message."""

    def __init__(self, status: int, field: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.field, self.message, self.headers = status, field, message, headers


def error_response(status: int, message: str, field: str | None = None, headers=None) -> JSONResponse:
    """The JSON body of every error."""
    return JSONResponse({"error": message, "field": field}, status_code=status, headers=headers)


def field_of(loc) -> str:
    """A pydantic error location as the dotted field a user wrote: ``options.nbest``, ``text[3]``."""
    out = ""
    for part in loc:
        if part == "body":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in UNION_BRANCHES:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_error(errors: list[dict]) -> tuple[int, str, str]:
    """(status, field, message) for the error to report: a stray field first, else the
    one deepest in the body (the list item of ``text`` rather than its union)."""
    stray = [e for e in errors if e.get("type") == "extra_forbidden"]
    first = stray[0] if stray else max(errors, key=lambda e: len(e.get("loc", ())))
    if first.get("type") == "json_invalid":
        return 400, "body", f"body: not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})"
    loc = list(first.get("loc", ()))
    field = field_of(loc)
    if first.get("type") == "missing" and field == "body":
        return 422, "body", 'body: give a JSON object such as {"text": "a sentence"}'
    if first.get("type") == "extra_forbidden":
        if field.startswith("options."):
            return 422, field, f"{field}: no such option; a request may set {', '.join(OPTION_NAMES)}"
        return 422, field, f"{field}: no such field; see /docs for the fields a request takes"
    if loc[1:2] == ["text"]:
        return 422, field, f"{field}: must be a string or a list of strings"
    if field == "body":
        return 422, field, 'body: must be a JSON object such as {"text": "a sentence"}'
    return 422, field, f"{field}: {first.get('msg', 'invalid value')}"


def user_error_field(message: str) -> str | None:
    """The field a ``UserError`` names at its start (``options.nbest=3: ...``)."""
    head = message.split(" ", 1)[0]
    return head.split("=", 1)[0].rstrip(":") or None


class Guard:
    """ASGI middleware: the API key (every path but ``OPEN_PATHS``) and the largest body
    (``max_body`` bytes, by Content-Length or, without one, by reading it)."""

    def __init__(self, app, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and scope["path"] not in OPEN_PATHS and not self.authorized(headers):
            response = error_response(
                401, "missing or wrong API key: send Authorization: Bearer KEY or X-API-Key: KEY",
                "Authorization", {"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            return await response(scope, receive, send)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return await self.too_large(scope, receive, send)
            if length is None:
                body = b""
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    body += message.get("body", b"")
                    if len(body) > self.max_body:
                        return await self.too_large(scope, receive, send)
                    if not message.get("more_body", False):
                        break
                receive = replay(body, receive)
        return await self.app(scope, receive, send)

    def authorized(self, headers: dict) -> bool:
        given = headers.get("x-api-key") or ""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            given = given or token.strip()
        return hmac.compare_digest(given.encode("utf-8", "replace"), self.api_key.encode("utf-8"))

    async def too_large(self, scope, receive, send):
        message = f"body: larger than {self.max_body} bytes, more than max_chars characters can take"
        await error_response(413, message, "body")(scope, receive, send)


def replay(body: bytes, receive):
    """A ``receive`` that gives ``body`` once, then what ``receive`` gives."""
    sent = False

    async def again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def until_disconnected(request: Request) -> None:
    """Return when the client of ``request`` has gone away (its body already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


def api_key_of(cfg) -> str | None:
    """``api_key``, else the environment variable ``SEQ2SEQ_API_KEY``, else None."""
    return cfg.get("api_key") or os.environ.get(API_KEY_VARIABLE) or None


def add_error_handlers(app: FastAPI) -> None:
    """Every error as JSON ``{"error": message, "field": field}`` (``error_response``)."""

    @app.exception_handler(RequestValidationError)
    async def on_validation(request, exc: RequestValidationError):
        status, field, message = validation_error(list(exc.errors()))
        return error_response(status, message, field)

    @app.exception_handler(HTTPException)
    async def on_http(request, exc: HTTPException):
        if exc.status_code == 404:
            return error_response(404, f"{request.url.path}: no such route; see /docs", "path")
        if exc.status_code == 405:
            return error_response(405, f"{request.method} {request.url.path}: not allowed", "method")
        if exc.status_code == 400:  # a body FastAPI could not read (not UTF-8, say)
            return error_response(400, "body: cannot be read as JSON (is it UTF-8?)", "body")
        return error_response(exc.status_code, str(exc.detail), None, getattr(exc, "headers", None))

    @app.exception_handler(ApiError)
    async def on_api_error(request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.field, exc.headers)

    @app.exception_handler(UserError)
    async def on_user_error(request, exc: UserError):
        return error_response(422, str(exc), user_error_field(str(exc)))

    @app.exception_handler(Exception)
    async def on_bug(request, exc: Exception):  # logged by uvicorn with its traceback
        return error_response(500, f"internal error: {type(exc).__name__}; the server's log has the details")


def request_sentences(body: TranslateRequest, max_sentences: int, max_chars: int) -> list[str]:
    """The sentences of a request, refused (``ApiError``) when empty, over ``max_sentences`` or
    ``max_chars`` (413), or not valid Unicode."""
    sentences = [body.text] if isinstance(body.text, str) else body.text
    if isinstance(body.text, str) and not body.text.strip():
        raise ApiError(422, "text", "text: empty; give a sentence")
    if not sentences:
        raise ApiError(422, "text", "text: an empty list; give at least one sentence")
    if len(sentences) > max_sentences:
        message = f"text: {len(sentences)} sentences; at most {max_sentences} (max_sentences) a request"
        raise ApiError(413, "text", message)
    chars = sum(len(s) for s in sentences)
    if chars > max_chars:
        raise ApiError(413, "text", f"text: {chars} characters; at most {max_chars} (max_chars) a request")
    for i, s in enumerate(sentences):
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            where = "text" if isinstance(body.text, str) else f"text[{i}]"
            raise ApiError(422, where, f"{where}: not valid Unicode (a lone surrogate)") from None
    return sentences


def check_attention(body: TranslateRequest, translator: Translator, engine: str | None) -> tuple | None:
    """(layer, head) to return attention for, or None; refuses what the engine cannot show."""
    if not body.attention:
        if body.attention_layer is not None or body.attention_head is not None:
            field = "attention_layer" if body.attention_layer is not None else "attention_head"
            raise ApiError(422, field, f"{field}: needs attention=true")
        return None
    grid = translator.attention_grid
    if grid is None:
        raise ApiError(
            422, "attention", f"attention: the {engine} engine serving this model gives no attention "
            "weights (an export or an ensemble); serve a checkpoint with engine=torch",
        )  # fmt: skip
    layers, heads = grid
    if body.attention_layer is not None and not -layers <= body.attention_layer < layers:
        raise ApiError(
            422, "attention_layer", f"attention_layer={body.attention_layer}: the model has {layers} "
            f"layer(s) of attention, 0 to {layers - 1}",
        )  # fmt: skip
    if body.attention_head is not None and not 0 <= body.attention_head < heads:
        raise ApiError(
            422, "attention_head", f"attention_head={body.attention_head}: the model has {heads} "
            f"head(s), 0 to {heads - 1} (null: their average)",
        )  # fmt: skip
    return body.attention_layer, body.attention_head


def create_app(translator: Translator, cfg, model_info: dict) -> FastAPI:
    """The app serving ``translator`` under the ``serve`` config ``cfg``; ``model_info`` is
    what ``GET /v1/model`` answers (``info.describe_model``)."""
    decoding = cfg.decoding
    target_language = (model_info.get("languages") or {}).get("target")
    if isinstance(target_language, list):  # data.corpora: one target, or a multilingual model's tags
        target_language = target_language[0] if len(target_language) == 1 else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = Batcher(translator, decoding.max_tokens, cfg.max_wait_ms / 1000, cfg.queue_size)
        app.state.batcher = batcher
        task = asyncio.create_task(batcher.run())
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            batcher.close()

    app = FastAPI(
        title="seq2seq",
        version="1",
        summary="Translate with a seq2seq model",
        description="`POST /v1/translate` translates; `GET /v1/model` describes the model. "
        'Errors are `{"error": message, "field": field}`.',
        lifespan=lifespan,
    )
    app.state.ready, app.state.draining = False, False
    max_body = 12 * cfg.max_chars + 64 * cfg.max_sentences + (1 << 16)  # \uXXXX escapes, quotes, options
    app.add_middleware(Guard, api_key=api_key_of(cfg), max_body=max_body)

    add_error_handlers(app)

    errors = {status: {"model": ErrorBody} for status in (400, 401, 413, 422, 503)}

    @functools.lru_cache(maxsize=256)
    def decoding_for(key: tuple):
        cfg_ = request_decoding(decoding, key)
        translator.check_decoding(cfg_, "options")
        return cfg_

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.get("/healthz", summary="The process is up")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and requests are taken", responses={503: {}})
    async def readyz(request: Request):
        if app.state.draining or not app.state.ready:
            state = "draining" if app.state.draining else "starting"
            return JSONResponse({"status": state}, status_code=503)
        return {"status": "ready"}

    @app.get("/v1/model", summary="What is served", responses=errors)
    async def model():
        return model_info

    @app.post(
        "/v1/translate", summary="Translate one sentence or a list", response_model=TranslateResponse,
        response_model_exclude_none=True, responses=errors,
    )  # fmt: skip
    async def translate(body: TranslateRequest, request: Request):
        sentences = request_sentences(body, cfg.max_sentences, cfg.max_chars)
        encoder = check_language(body.options, target_language, translator)  # a multilingual model's tag
        key = option_key(body.options, decoding)
        request_cfg = decoding_for(key)
        attention = check_attention(body, translator, model_info.get("engine"))
        texts = [clean_source(s) for s in sentences]
        todo = [i for i, t in enumerate(texts) if t]
        results: list = [[{"text": "", "score": 0.0}] for _ in texts]
        if todo:
            ids = encoder.encode([texts[i] for i in todo], warn=False)
            seeded = bool(request_cfg.sampling) and request_cfg.get("seed") is not None
            job = Job(ids, key, request_cfg, solo=seeded and bool(key), attention=attention)
            try:
                future = app.state.batcher.submit(job)
            except QueueFull:
                raise ApiError(
                    503, None, f"busy: {cfg.queue_size} requests are waiting (queue_size); retry shortly",
                    {"Retry-After": str(retry_after(app.state.batcher))},
                ) from None  # fmt: skip
            done = await first_of(future, request)
            if not done:
                return error_response(503, "the client went away before its translation was ready")
            for i, sentence in zip(todo, future.result(), strict=True):
                results[i] = sentence
        return {"translations": [answer(hyps, body.attention) for hyps in results]}

    return app


def answer(hyps: list[dict], with_attention: bool) -> dict:
    """One sentence's entry of the response: the best hypothesis, and the n-best list when
    there are several (or attention was asked, so that each carries its own)."""
    best = hyps[0]
    entry = {"text": best["text"], "score": best["score"]}
    if "attention" in best:
        entry["attention"] = best["attention"]
    if len(hyps) > 1:
        entry["nbest"] = hyps
    return entry


async def first_of(future: asyncio.Future, request: Request) -> bool:
    """Wait for ``future`` or for the client to go away; True when the future is done. A
    request abandoned while queued is cancelled, so the batcher drops it unseen."""
    gone = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({future, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if future.done():
        return True
    future.cancel()
    return False


def retry_after(batcher: Batcher) -> int:
    """Seconds a refused client should wait: about how long the queue takes, at least 1."""
    return max(1, math.ceil(len(batcher.queue) * batcher.max_wait)) if batcher.queue else 1
