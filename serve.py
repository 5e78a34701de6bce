"""Serve a base model and any number of LoRA adapters with an OpenAI-compatible API.

    python serve.py --base_model base_models/SmolLM2-135M-Instruct \
        --lora_weights fin=outputs/lora-fin,ie=outputs/lora-ie --port 8000

The base is loaded once; each adapter is a `model` a request can name (GET /v1/models lists them).
Requests for different adapters share generation batches.
"""
from __future__ import annotations

import logging

from utils import settings
from utils.cli import bool_flags, run
from utils.errors import UsageError

logger = logging.getLogger("serve")


@bool_flags
def main(
    base_model: str = settings.BASE_MODEL,
    lora_weights="",
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str = "",
    load_8bit=False,
    load_4bit=False,
    trust_remote_code=False,
    bf16: bool | None = None,
    prompt_template: str = "",
    max_new_tokens: int = None,
    do_sample: bool | None = None,
    temperature: float = None,
    top_p: float = None,
    top_k: int = None,
    repetition_penalty: float = None,
    no_repeat_ngram_size: int = None,
    max_batch_size: int = 16,
    batch_window_ms: float = 10,
    queue_size: int = 64,
    context_len: int = 0,
    web_page=True,
    index_dir: str = "",  # a document index (python -m utils.retrieval index): requests may answer over it
    index_top_k: int = 3,  # passages per question for requests that ask over the documents
):
    """Load the model(s) and answer HTTP requests on HOST:PORT until interrupted.

    --lora_weights: PATH,PATH (named after their folders) or NAME=PATH,NAME=PATH. --prompt_template: the base's
    template (default: its own chat template); adapters use the one they were trained with. --max_new_tokens,
    --do_sample, --temperature, --top_p, --top_k, --repetition_penalty, --no_repeat_ngram_size: defaults for
    requests that do not set them (unset: utils/settings.py GENERATION, as infer and compare; greedy unless
    --do_sample True). Answers stop at EOS and at the template's next-turn markers. --max_batch_size rows generate together; a request waits --batch_window_ms for
    company; --queue_size requests may wait, more are answered 503. --context_len 0: the model's own.
    --bf16: unset = bf16 where the hardware has it natively (utils/hardware.py); False = full precision,
    where batched greedy answers equal solo ones exactly (bf16 rounding can flip a near-tie token).
    --web_page False: no chat page at / (the page logs in with --api_key as its password when one is set).
    --index_dir DIR: a chat request with "retrieval": {"top_k": K} (or true), or a model id MODEL+docs, is answered over
    the passages its question retrieves from DIR; the response carries them and the ones the answer cites in its
    `retrieval` field. The page's 文档问答 tab uploads files into DIR (created if missing).
    """
    import uvicorn

    from utils.generation import generation_settings
    from utils.serving.api import create_app
    from utils.serving.engine import GenerationEngine, ServingError

    if not 0 < int(port) < 65536:
        raise UsageError(f"--port must be from 1 to 65535, got {port}")
    try:
        engine = GenerationEngine.load(
            base_model, lora_weights, load_8bit=load_8bit, load_4bit=load_4bit,
            trust_remote_code=trust_remote_code, bf16=bf16, prompt_template=prompt_template,
            context_len=context_len, max_batch_size=max_batch_size,
            batch_window_ms=batch_window_ms, queue_size=queue_size, index_dir=index_dir, index_top_k=index_top_k,
            generation=generation_settings(
                max_new_tokens=max_new_tokens, do_sample=do_sample,
                temperature=temperature, top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                no_repeat_ngram_size=no_repeat_ngram_size))
    except ServingError as err:
        raise UsageError(err.message) from err
    app = create_app(engine, api_key=str(api_key) if api_key else None, web_page=web_page)
    logger.info("Serving %s on http://%s:%d/v1 (OpenAI-compatible)%s", ", ".join(engine.model_ids()), host, port,
                " with an API key" if api_key else "")
    try:
        uvicorn.run(app, host=host, port=int(port), log_level="info")
    finally:
        engine.close()


if __name__ == "__main__":
    run(main)
