"""The generation engine behind the server: one base, its adapters, and requests batched together.

Requests wait in a bounded queue (full: QueueFullError at once). One worker thread takes them into a
DecodeBatch (utils/serving/decoder.py) up to `max_batch_size` rows, after waiting `batch_window_ms` for company;
newcomers join a running batch between steps, and rows leave as they finish, so short answers do not wait
for long ones. Rows for different adapters and for the base share each forward pass (PEFT's
`adapter_names`); no request ever switches the model's active adapter. The event loop only hands requests
over and receives text, so /health and /v1/models answer while a batch runs.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from pathlib import Path

from utils import settings
from utils.adapters import inference_prompter, load_adapter
from utils.errors import CornucopiaError
from utils.serving.decoder import DecodeBatch, DecodeRow
from utils.loading import compute_dtype, load_base_model, load_tokenizer, pick_device
from utils.retrieval.answer import passages_input
from utils.retrieval.index import open_or_create
from utils.settings import GenerationSettings

logger = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
DOCS_SUFFIX = "+docs"  # a model id asking over the server's documents


class ServingError(CornucopiaError):
    """A request the server cannot answer; carries the HTTP status and OpenAI's error fields."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


class BadRequestError(ServingError):
    """Malformed or out-of-range request fields (HTTP 400)."""


class ModelNotFoundError(ServingError):
    """A `model` that is neither the base nor a loaded adapter (HTTP 404)."""

    status = 404
    type = "not_found_error"


class QueueFullError(ServingError):
    """Every queue place is taken (HTTP 503): the client should retry later."""

    status = 503
    type = "server_overloaded"


class GenerationFailedError(ServingError):
    """The model failed while generating (HTTP 500)."""

    status = 500
    type = "server_error"


def parse_adapters(lora_weights) -> dict[str, str]:
    """`a,b` (named after their folders) or `name=path,...` (a list from fire too) -> {name: path}."""
    if not lora_weights:
        return {}
    items = lora_weights if isinstance(lora_weights, (list, tuple)) else str(lora_weights).split(",")
    adapters: dict[str, str] = {}
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        name, _, path = item.partition("=") if "=" in item else (Path(item.rstrip("/")).name, "", item)
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise BadRequestError(f"--lora_weights: '{item}' is not PATH or NAME=PATH")
        if name in adapters:
            raise BadRequestError(f"--lora_weights: two adapters are named '{name}'; name them: NAME=PATH,...")
        adapters[name] = path
    return adapters


class Job:
    """One request in flight: its decode row, where its text goes, and what the client is told at the end."""

    def __init__(self, model_id: str, row: DecodeRow):
        self.model_id, self.row = model_id, row
        row.owner = self
        self.passages: list[dict] = []  # retrieved for this request (utils/retrieval)
        self.retrieval = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events: asyncio.Queue | None = None
        self.cancelled = False
        self.submitted = self.first_token_at = None

    @property
    def prompt_tokens(self) -> int:
        return len(self.row.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.row.new_ids)

    @property
    def finish_reason(self) -> str | None:
        return self.row.finish_reason

    def usage(self) -> dict:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def cancel(self) -> None:
        """The client went away: the worker drops the row before its next step."""
        self.cancelled = True

    def _send(self, kind: str, value=None) -> None:  # from the worker thread
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))
        except RuntimeError:  # the client's event loop is gone
            self.cancelled = True


class GenerationEngine:
    """A base model, its named LoRA adapters, and a worker thread that batches everyone's generation."""

    def __init__(self, model, tokenizer, base_id: str, adapters: dict[str, str] | None = None,
                 prompt_template: str = "", context_len: int = 0, max_batch_size: int = 16,
                 batch_window_ms: float = 10, queue_size: int = 64,
                 generation: GenerationSettings = settings.GENERATION, index_dir: str = "", index_top_k: int = 3):
        if max_batch_size < 1 or queue_size < 1 or batch_window_ms < 0:
            raise BadRequestError("--max_batch_size and --queue_size must be at least 1, --batch_window_ms not negative")
        self.model, self.tokenizer, self.base_id = model, tokenizer, base_id
        self.adapters = dict(adapters or {})
        self.prompters = {base_id: inference_prompter(tokenizer, prompt_template, prefer_chat=True)}
        for name, path in self.adapters.items():
            self.prompters[name] = inference_prompter(tokenizer, lora_weights=path)
        self.context_len = context_len or int(getattr(model.config, "max_position_embeddings", 0) or 2048)
        self.max_batch_size, self.batch_window = max_batch_size, batch_window_ms / 1000
        # Requests that leave a setting out get it from here (the same object infer and compare start from).
        self.defaults = generation
        # The user's documents (utils/retrieval): an existing index is loaded, a new folder starts empty.
        self.index_dir, self.index_top_k = index_dir, index_top_k
        self.index = open_or_create(index_dir) if index_dir else None
        self._index_lock = threading.Lock()
        self.batch = DecodeBatch(model, tokenizer)
        # what batching did since start: the most rows decoded together, and rows that joined a running batch
        self.stats = {"max_rows": 0, "joined_running_batch": 0}
        self._queue: queue.Queue[Job] = queue.Queue(maxsize=queue_size)
        self._closing = threading.Event()
        self._worker = threading.Thread(target=self._work, name="generation", daemon=True)
        self._worker.start()
        logger.info("Serving %s (template %s) and %d adapter(s) %s; batches of up to %d, queue of %d, context %d",
                    base_id, self.prompters[base_id].template_name, len(self.adapters),
                    {n: self.prompters[n].template_name for n in self.adapters}, max_batch_size, queue_size,
                    self.context_len)

    @classmethod
    def load(cls, base_model: str, lora_weights="", load_8bit: bool = False, load_4bit: bool = False,
             trust_remote_code: bool = False, bf16=None, **options) -> "GenerationEngine":
        """Load the base once (the project's one loader) and every adapter into it under its name."""
        adapters = parse_adapters(lora_weights)
        tokenizer = load_tokenizer(base_model, padding_side="left", trust_remote_code=trust_remote_code)
        model = load_base_model(base_model, load_8bit=load_8bit, load_4bit=load_4bit,
                                dtype=compute_dtype(pick_device(), bf16),
                                trust_remote_code=trust_remote_code)
        base_id = Path(base_model.rstrip("/")).name
        if base_id in adapters:
            raise BadRequestError(f"--lora_weights: adapter name '{base_id}' is the base model's id; rename it")
        for name, path in adapters.items():
            model = load_adapter(model, path, adapter_name=name)  # checks the adapter fits the base first
        model.eval()
        return cls(model, tokenizer, base_id, adapters, **options)

    # ---- what clients see ------------------------------------------------------------------------------

    def model_ids(self) -> list[str]:
        """The base's id first, then the adapters' names."""
        return [self.base_id, *self.adapters]

    def docs_model_ids(self) -> list[str]:
        """With a document index, each model again as MODEL+docs: the same model, answering over the documents."""
        return [m + DOCS_SUFFIX for m in self.model_ids()] if self.index is not None else []

    def queued(self) -> int:
        return self._queue.qsize()

    def running(self) -> int:
        return len(self.batch.rows)

    def prepare_chat(self, model: str, messages: list[dict], retrieval=None, **options) -> Job:
        """A job for a conversation, rendered as `model` was trained to read it (checks everything first).

        RETRIEVAL (an object {"top_k": K}, or True; also a model id ending in +docs) asks over the passages the last
        question retrieves from the server's document index; the job keeps them (`job.passages`)."""
        requested = model
        model, top_k = self._retrieval_request(model, retrieval)
        self._check_model(model)
        prompter = self.prompters[model]
        passages = []
        if top_k and isinstance(messages, list) and messages and isinstance(messages[-1], dict):
            passages = self.retrieve(_text_of(messages[-1].get("content"), len(messages) - 1), top_k)
        background = passages_input(passages) if passages else ""
        job = self._job(model, self.render_chat(model, messages, background), "messages",
                        template_stop=prompter.stop_markers(), stop_token_ids=prompter.stop_token_ids(), **options)
        job.passages, job.retrieval, job.model_id = passages, bool(top_k), requested
        return job

    # ---- documents -------------------------------------------------------------------------------------------

    def _retrieval_request(self, model, retrieval) -> tuple[str, int]:
        """(the model id without +docs, passages to retrieve: 0 = none)."""
        wanted = retrieval not in (None, False)
        if isinstance(model, str) and model.endswith(DOCS_SUFFIX):
            model, wanted = model[:-len(DOCS_SUFFIX)], True
        if not wanted:
            return model, 0
        if self.index is None:
            raise BadRequestError("this server has no document index: start it with --index_dir DIR", "retrieval")
        top_k = self.index_top_k
        if isinstance(retrieval, dict):
            top_k = retrieval.get("top_k", top_k)
            if not _is_int(top_k) or not 1 <= top_k <= 20:
                raise BadRequestError(f"'retrieval.top_k' must be an integer from 1 to 20, got {top_k!r}", "retrieval")
        elif retrieval not in (None, True):
            raise BadRequestError("'retrieval' must be true or an object such as {\"top_k\": 3}", "retrieval")
        return model, top_k

    def retrieve(self, question: str, top_k: int) -> list[dict]:
        with self._index_lock:
            return self.index.search(question, top_k)

    def add_documents(self, paths) -> dict:
        """Index more files into the server's index and save it (the next question can use them)."""
        if self.index is None:
            raise BadRequestError("this server has no document index: start it with --index_dir DIR")
        with self._index_lock:
            summary = self.index.update(paths, progress=False)
            self.index.save(self.index_dir)
        return summary

    def prepare_completion(self, model: str, prompt: str, **options) -> Job:
        """A job that continues a raw prompt."""
        self._check_model(model)
        if not isinstance(prompt, str) or not prompt:
            raise BadRequestError("'prompt' must be a non-empty string", "prompt")
        return self._job(model, prompt, "prompt", **options)

    def submit(self, job: Job) -> None:
        """Queue a job for the worker; raises QueueFullError at once when no place is free."""
        job.loop = asyncio.get_running_loop()
        job.events = asyncio.Queue()
        job.submitted = time.perf_counter()
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"the server is busy: all {self._queue.maxsize} queue places are taken; "
                                 f"retry later", code="queue_full") from None

    async def results(self, job: Job):
        """The job's text deltas as they are made; the job is dropped if the caller stops listening."""
        try:
            while True:
                kind, value = await job.events.get()
                if kind == "delta":
                    yield value
                elif kind == "error":
                    raise GenerationFailedError(f"generation failed: {value}")
                else:
                    return
        finally:
            if job.finish_reason is None:
                job.cancel()

    async def stream_chat(self, model: str, messages: list[dict], **options):
        """Text deltas of the answer of `model` (the base's id or an adapter's name) to `messages`.

        OPTIONS as a request's (max_tokens, temperature, top_p, top_k, repetition_penalty, no_repeat_ngram_size,
        stop, seed); one left out takes the engine's default."""
        job = self.prepare_chat(model, messages, **options)
        self.submit(job)
        async for delta in self.results(job):
            yield delta

    def close(self) -> None:
        self._closing.set()
        self._worker.join(timeout=10)

    # ---- requests into jobs ----------------------------------------------------------------------------

    def _check_model(self, model) -> None:
        if model not in self.prompters:
            raise ModelNotFoundError(f"The model '{model}' does not exist. Available models: "
                                     f"{', '.join(self.model_ids())}", "model", "model_not_found")

    def render_chat(self, model: str, messages: list[dict], background: str = "") -> str:
        """The prompt text for a conversation; adapters get their training template, history included.

        BACKGROUND (retrieved passages) goes with the last question: into the template's input slot, or after the
        question in a chat template (as utils.prompter renders an input)."""
        if not isinstance(messages, list) or not messages:
            raise BadRequestError("'messages' must be a non-empty list", "messages")
        turns = []
        for k, message in enumerate(messages):
            if not isinstance(message, dict):
                raise BadRequestError(f"messages[{k}] must be an object with 'role' and 'content'", "messages")
            role = message.get("role")
            if role not in ROLES:
                raise BadRequestError(f"messages[{k}].role must be one of {', '.join(ROLES)}, got {role!r}",
                                      "messages")
            turns.append({"role": role, "content": _text_of(message.get("content"), k)})
        prompter = self.prompters[model]
        if model == self.base_id and prompter.template is None:
            if background and turns[-1]["role"] == "user":
                turns[-1] = {"role": "user", "content": f"{turns[-1]['content']}\n\n{background}"}
            # The base with its own chat template: the conversation as it is, system prompt included.
            return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        # Training records have no system turn (utils/data drops it), so neither does the prompt.
        talk = [t for t in turns if t["role"] != "system"]
        if not talk or len(talk) % 2 == 0 or any(t["role"] != ("user" if k % 2 == 0 else "assistant")
                                                 for k, t in enumerate(talk)):
            raise BadRequestError("messages must alternate user and assistant turns and end with a user turn "
                                  "(after any system messages)", "messages")
        record = {"instruction": talk[-1]["content"], "input": background,
                  "history": [[talk[k]["content"], talk[k + 1]["content"]] for k in range(0, len(talk) - 1, 2)]}
        return prompter.prompt_for(record, self.tokenizer.eos_token or "")

    def _job(self, model, prompt: str, prompt_param: str, max_tokens=None, temperature=None, top_p=None,
             stop=None, seed=None, ignore_eos=False, top_k=None, repetition_penalty=None, no_repeat_ngram_size=None,
             template_stop=(), stop_token_ids=()) -> Job:
        ids = self.tokenizer(prompt, add_special_tokens=True)["input_ids"]
        if len(ids) >= self.context_len:
            raise BadRequestError(f"This model's maximum context length is {self.context_len} tokens, but the "
                                  f"prompt has {len(ids)} tokens; shorten it", prompt_param, "context_length_exceeded")
        room = self.context_len - len(ids)
        defaults = self.defaults
        if max_tokens is None:
            max_tokens = min(defaults.max_new_tokens, room)
        if not _is_int(max_tokens) or not 1 <= max_tokens <= self.context_len:
            raise BadRequestError(f"'max_tokens' must be an integer from 1 to {self.context_len}, got {max_tokens!r}",
                                  "max_tokens")
        if max_tokens > room:
            raise BadRequestError(f"This model's maximum context length is {self.context_len} tokens; the prompt "
                                  f"has {len(ids)} and max_tokens asks for {max_tokens} more; lower max_tokens to "
                                  f"{room} or less", "max_tokens", "context_length_exceeded")
        sampling = defaults.do_sample
        if temperature is None:
            temperature = defaults.temperature if sampling else 0.0
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise BadRequestError(f"'temperature' must be a number from 0 to 2, got {temperature!r}", "temperature")
        if top_p is None:
            top_p = defaults.top_p if sampling else 1.0
        if not _is_number(top_p) or not 0 < top_p <= 1:
            raise BadRequestError(f"'top_p' must be a number above 0 and at most 1, got {top_p!r}", "top_p")
        if top_k is None:
            top_k = defaults.top_k if sampling else 0
        if not _is_int(top_k) or top_k < -1:
            raise BadRequestError(f"'top_k' must be an integer, 0 or -1 for none, got {top_k!r}", "top_k")
        penalty = defaults.repetition_penalty if repetition_penalty is None else repetition_penalty
        if not _is_number(penalty) or not 0 < penalty <= 2:
            raise BadRequestError(f"'repetition_penalty' must be a number above 0 and at most 2 (1 = off), got "
                                  f"{penalty!r}", "repetition_penalty")
        ngram = defaults.no_repeat_ngram_size if no_repeat_ngram_size is None else no_repeat_ngram_size
        if not _is_int(ngram) or ngram < 0:
            raise BadRequestError(f"'no_repeat_ngram_size' must be an integer, 0 for off, got {ngram!r}",
                                  "no_repeat_ngram_size")
        if seed is not None and not _is_int(seed):
            raise BadRequestError(f"'seed' must be an integer, got {seed!r}", "seed")
        stops = [stop] if isinstance(stop, str) else stop or []
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise BadRequestError("'stop' must be a non-empty string or a list of them", "stop")
        row = DecodeRow(self.tokenizer, ids, max_tokens, adapter=None if model == self.base_id else model,
                        temperature=float(temperature), top_p=float(top_p),
                        top_k=max(0, top_k) if temperature > 0 else 0, repetition_penalty=float(penalty),
                        no_repeat_ngram_size=ngram, seed=seed, stop=[*template_stop, *stops],
                        stop_token_ids=stop_token_ids, ignore_eos=bool(ignore_eos))
        return Job(model, row)

    # ---- the worker thread -----------------------------------------------------------------------------

    def _take(self, limit: int, wait: float | None) -> list[Job]:
        """Up to `limit` queued jobs that are still wanted; waits `wait` s for the first (None: forever)."""
        jobs: list[Job] = []
        deadline = None
        while len(jobs) < limit:
            try:
                if not jobs and wait is None:
                    job = self._queue.get(timeout=0.5)
                elif deadline is None:
                    job = self._queue.get_nowait()
                else:
                    job = self._queue.get(timeout=max(0.0, deadline - time.perf_counter()))
            except queue.Empty:
                if not jobs and wait is None and not self._closing.is_set():
                    continue
                break
            if job.cancelled:
                continue
            jobs.append(job)
            if wait is None and deadline is None and self.batch_window > 0:
                deadline = time.perf_counter() + self.batch_window  # wait a little for others to share the batch
        return jobs

    def _work(self) -> None:
        while not self._closing.is_set():
            batch = self.batch
            free = self.max_batch_size - len(batch.rows)
            newcomers = []
            if not batch.rows:
                newcomers = self._take(free, None)
            elif free > 0 and batch.can_join():
                newcomers = self._take(free, 0)
            if newcomers and batch.rows:
                self.stats["joined_running_batch"] += len(newcomers)
            try:
                events = batch.add([job.row for job in newcomers]) if newcomers else []
                if batch.rows and not newcomers:
                    events = batch.step()
            except Exception as err:  # keep serving: every row of the batch is told and dropped
                logger.exception("Generation failed")
                for row in batch.rows + [job.row for job in newcomers]:
                    row.owner._send("error", f"{type(err).__name__}: {err}")
                batch.keep([])
                continue
            self.stats["max_rows"] = max(self.stats["max_rows"], len(batch.rows))
            now = time.perf_counter()
            for row, delta in events:
                job = row.owner
                if job.first_token_at is None:
                    job.first_token_at = now
                if delta:
                    job._send("delta", delta)
                if row.finish_reason:
                    job._send("done")
            batch.keep([row for row in batch.rows if not row.finish_reason and not row.owner.cancelled])


def _text_of(content, k: int) -> str:
    """A message's text: a string, or OpenAI's list of {'type': 'text', 'text': ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise BadRequestError(f"messages[{k}].content must be a string or a list of text parts", "messages")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
