"""The OpenAI-compatible HTTP API over a GenerationEngine (FastAPI; streams as server-sent events).

GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions. Errors are OpenAI's JSON
shape, `{"error": {"message", "type", "param", "code"}}`, with 400 / 401 / 404 / 503 as OpenAI and vLLM use
them; a bad request never stops the server.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from utils.retrieval.answer import citations, public_passages
from utils.serving.engine import BadRequestError, GenerationEngine, Job, ServingError

logger = logging.getLogger(__name__)

# Fields this API reads from a request body, with the JSON types each may have (None: may be null).
CHAT_FIELDS = {"model": (str,), "messages": (list,), "max_tokens": (int, None), "max_completion_tokens": (int, None),
               "temperature": (int, float, None), "top_p": (int, float, None), "n": (int, None),
               "stream": (bool, None), "stop": (str, list, None), "seed": (int, None),
               "stream_options": (dict, None), "ignore_eos": (bool, None),
               # vLLM's extra sampling parameters, under its names
               "top_k": (int, None), "repetition_penalty": (int, float, None), "no_repeat_ngram_size": (int, None),
               # this server's own: answer over the documents of --index_dir ({"top_k": 3} or true)
               "retrieval": (bool, dict, None)}
COMPLETION_FIELDS = {**{k: v for k, v in CHAT_FIELDS.items() if k not in ("messages", "retrieval")},
                     "prompt": (str, list), "echo": (bool, None), "logprobs": (int, bool, None)}


class AuthenticationError(ServingError):
    """A missing or wrong API key (HTTP 401)."""

    status = 401
    type = "authentication_error"


def error_response(err: ServingError) -> JSONResponse:
    return JSONResponse(status_code=err.status, content={
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}})


def create_app(engine: GenerationEngine, api_key: str | None = None, web_page: bool = True) -> FastAPI:
    """The API app; with `api_key`, every /v1 route wants `Authorization: Bearer <api_key>`.

    With `web_page`, the chat page (utils/serving/web.py) is mounted at `/`, after the API routes.
    """
    app = FastAPI(title="Cornucopia", description="OpenAI-compatible API for a base model and its LoRA adapters")
    app.state.engine = engine
    created = int(time.time())

    @app.exception_handler(ServingError)
    async def serving_error(request: Request, err: ServingError):
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        kind = "not_found_error" if err.status_code == 404 else "invalid_request_error"
        return JSONResponse(status_code=err.status_code, content={
            "error": {"message": str(err.detail), "type": kind, "param": None, "code": None}})

    @app.exception_handler(Exception)
    async def server_error(request: Request, err: Exception):
        logger.exception("Unexpected error on %s", request.url.path)
        return JSONResponse(status_code=500, content={
            "error": {"message": f"internal error: {type(err).__name__}: {err}", "type": "server_error",
                      "param": None, "code": None}})

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            if given != f"Bearer {api_key}":
                return error_response(AuthenticationError(
                    "Incorrect API key provided" if given else "Missing API key: send 'Authorization: Bearer KEY'",
                    code="invalid_api_key"))
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": engine.model_ids(), "running": engine.running(), "queued": engine.queued(),
                "batching": engine.stats}

    @app.get("/v1/models")
    async def models():
        entries = [{"id": name, "object": "model", "created": created, "owned_by": "cornucopia",
                    "root": engine.adapters.get(name, engine.base_id),
                    "parent": None if name == engine.base_id else engine.base_id}
                   for name in engine.model_ids()]
        # MODEL+docs: the same model answering over the server's documents (--index_dir)
        entries += [{"id": name, "object": "model", "created": created, "owned_by": "cornucopia",
                     "root": engine.index_dir, "parent": name[:-len("+docs")]} for name in engine.docs_model_ids()]
        return {"object": "list", "data": entries}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await read_body(request, CHAT_FIELDS, required=("model", "messages"))
        job = engine.prepare_chat(body["model"], body["messages"], retrieval=body.get("retrieval"),
                                  **generation_options(body))
        return await answer(request, job, body, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await read_body(request, COMPLETION_FIELDS, required=("model", "prompt"))
        prompt = body["prompt"]
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise BadRequestError("'prompt' must be one string (or a list of exactly one string)", "prompt")
            prompt = prompt[0]
        if body.get("echo") or body.get("logprobs"):
            raise BadRequestError("'echo' and 'logprobs' are not supported", "echo" if body.get("echo") else "logprobs")
        job = engine.prepare_completion(body["model"], prompt, **generation_options(body))
        return await answer(request, job, body, chat=False)

    async def answer(request: Request, job: Job, body: dict, chat: bool):
        engine.submit(job)  # QueueFullError (503) here, before any byte of the answer is sent
        ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(sse(job, ident, chat, usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        text = await collect(request, job)
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}} if chat else
                  {"index": 0, "text": text})
        choice.update(finish_reason=job.finish_reason, logprobs=None)
        response = {"id": ident, "object": "chat.completion" if chat else "text_completion",
                    "created": int(time.time()), "model": job.model_id, "choices": [choice], "usage": job.usage()}
        if job.retrieval:  # the passages the answer was given, and the ones it cites ([n] -> file, page)
            response["retrieval"] = {"passages": public_passages(job.passages),
                                     "citations": citations(text, job.passages)}
        return response

    async def collect(request: Request, job: Job) -> str:
        """The whole answer; if the client disconnects first, the job is dropped."""
        parts: list[str] = []

        async def read():
            async for delta in engine.results(job):
                parts.append(delta)

        reading = asyncio.ensure_future(read())
        while not reading.done():
            await asyncio.wait([reading], timeout=0.5)
            if not reading.done() and await request.is_disconnected():
                job.cancel()
                reading.cancel()
                break
        if job.cancelled:
            return ""  # nobody is listening any more
        await reading  # raises what the generation raised
        return "".join(parts)

    async def sse(job: Job, ident: str, chat: bool, usage: bool):
        made = int(time.time())

        def event(delta: str | None, finish: str | None) -> str:
            if chat:
                choice = {"index": 0, "delta": {} if delta is None else {"content": delta}, "logprobs": None,
                          "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": finish}
            chunk = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                     "created": made, "model": job.model_id, "choices": [choice]}
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        parts: list[str] = []
        try:
            if chat:
                first = json.loads(event("", None)[6:])
                first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                if job.retrieval:  # the passages come first, so a page can show them while the answer streams
                    first["retrieval"] = {"passages": public_passages(job.passages)}
                yield f"data: {json.dumps(first, ensure_ascii=False)}\n\n"
            async for delta in engine.results(job):
                parts.append(delta)
                yield event(delta, None)
            last = json.loads(event(None, job.finish_reason)[6:])
            if job.retrieval:
                last["retrieval"] = {"citations": citations("".join(parts), job.passages)}
            yield f"data: {json.dumps(last, ensure_ascii=False)}\n\n"
            if usage:
                chunk = {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion",
                         "created": made, "model": job.model_id, "choices": [], "usage": job.usage()}
                yield f"data: {json.dumps(chunk)}\n\n"
        except ServingError as err:  # the stream has begun: the error travels as an event
            yield f"data: {json.dumps({'error': {'message': err.message, 'type': err.type, 'param': None, 'code': err.code}})}\n\n"
        yield "data: [DONE]\n\n"

    if web_page:
        from utils.serving.web import mount_chat_page  # gradio is imported only when the page is served

        mount_chat_page(app, engine, path="/", api_key=api_key)
    return app


async def read_body(request: Request, fields: dict, required: tuple) -> dict:
    """The JSON body, its known fields type-checked; 400 naming the field otherwise."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BadRequestError(f"the request body is not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise BadRequestError("the request body must be a JSON object")
    for name in required:
        if name not in body:
            raise BadRequestError(f"'{name}' is required", name, "missing_required_parameter")
    for name, kinds in fields.items():
        if name not in body:
            continue
        value = body[name]
        ok = (value is None and None in kinds) or (
            value is not None and any(isinstance(value, k) for k in kinds if k is not None)
            and not (isinstance(value, bool) and bool not in kinds))
        if not ok:
            names = "/".join({str: "string", list: "array", dict: "object", int: "integer", float: "number",
                              bool: "boolean"}[k] for k in kinds if k is not None)
            raise BadRequestError(f"'{name}' must be {names}, got {json.dumps(value)[:80]}", name, "invalid_type")
    if body.get("n") not in (None, 1):
        raise BadRequestError("only n=1 is supported", "n")
    return body


def generation_options(body: dict) -> dict:
    max_tokens = body.get("max_completion_tokens")
    return {"max_tokens": body.get("max_tokens") if max_tokens is None else max_tokens,
            "temperature": body.get("temperature"), "top_p": body.get("top_p"), "stop": body.get("stop"),
            "seed": body.get("seed"), "ignore_eos": body.get("ignore_eos"), "top_k": body.get("top_k"),
            "repetition_penalty": body.get("repetition_penalty"),
            "no_repeat_ngram_size": body.get("no_repeat_ngram_size")}
