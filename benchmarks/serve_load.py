"""Load test of serve.py's API: N concurrent streaming clients, fixed-length answers; prints a Markdown table.

    python benchmarks/serve_load.py --concurrency 1,4,16 --max_tokens 128

Starts the server in this process (uvicorn on a free 127.0.0.1 port) with the embedded default base (and
--lora_weights if given: then clients alternate between the base and the first adapter). Each client asks
`--rounds` questions one after another, streamed, with `ignore_eos` so every answer is `--max_tokens` tokens.
Reports requests/s, generated tokens/s, p50 / p95 latency, p95 time to first token, and the ratio of
tokens/s at the highest concurrency to that at the lowest. Goals on a 2-core CPU: ratio >= 3, p95 TTFT <= 2 s at 4.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import openai  # noqa: E402
import torch  # noqa: E402
import uvicorn  # noqa: E402

from utils import settings  # noqa: E402
from utils.cli import parse_list, run  # noqa: E402
from utils.serving.api import create_app  # noqa: E402
from utils.serving.engine import GenerationEngine  # noqa: E402

QUESTIONS = ["什么是股票？请详细解释。", "Explain how a bond works, in detail.", "LPR是什么？它如何影响房贷？",
             "信用卡最低还款有什么影响？", "What is inflation and why does it matter?", "基金定投有哪些优缺点？",
             "A股的交易规则有哪些？", "How should a beginner start investing?"]


async def client(api, model: str, index: int, rounds: int, max_tokens: int, rows: list):
    for r in range(rounds):
        question = QUESTIONS[(index + r) % len(QUESTIONS)]
        began = time.perf_counter()
        first, tokens = None, 0
        stream = await api.chat.completions.create(
            model=model, messages=[{"role": "user", "content": question}], max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True}, extra_body={"ignore_eos": True})
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content and first is None:
                first = time.perf_counter() - began
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        rows.append({"latency": time.perf_counter() - began, "ttft": first or 0.0, "tokens": tokens})


async def level(url: str, models: list[str], concurrency: int, rounds: int, max_tokens: int) -> dict:
    api = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    rows: list[dict] = []
    began = time.perf_counter()
    await asyncio.gather(*[client(api, models[k % len(models)], k, rounds, max_tokens, rows)
                           for k in range(concurrency)])
    seconds = time.perf_counter() - began
    await api.close()
    latency, ttft = [r["latency"] for r in rows], [r["ttft"] for r in rows]
    return {"concurrency": concurrency, "requests": len(rows), "seconds": seconds,
            "rps": len(rows) / seconds, "tps": sum(r["tokens"] for r in rows) / seconds,
            "p50": float(np.percentile(latency, 50)), "p95": float(np.percentile(latency, 95)),
            "ttft50": float(np.percentile(ttft, 50)), "ttft95": float(np.percentile(ttft, 95)),
            "tokens": sum(r["tokens"] for r in rows)}


def main(base_model: str = settings.BASE_MODEL, lora_weights: str = "", concurrency="1,4,16", rounds: int = 2,
         max_tokens: int = 128, max_batch_size: int = 16, batch_window_ms: float = 10):
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not one log line per request
    engine = GenerationEngine.load(base_model, lora_weights, max_batch_size=max_batch_size,
                                   batch_window_ms=batch_window_ms)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(engine, web_page=False), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1"
    models = engine.model_ids()[:2]
    try:
        asyncio.run(level(url, models[:1], 1, 1, 8))  # warm-up
        results = [asyncio.run(level(url, models, int(c), rounds, max_tokens)) for c in parse_list(concurrency)]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.close()
    print(f"\n{' + '.join(models)}, {max_tokens}-token answers, {rounds} per client, max batch {max_batch_size}, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| concurrency | requests | seconds | requests/s | generated tokens/s | p50 latency s | p95 latency s "
          "| p50 TTFT s | p95 TTFT s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['concurrency']} | {r['requests']} | {r['seconds']:.1f} | {r['rps']:.2f} | {r['tps']:.1f} | "
              f"{r['p50']:.2f} | {r['p95']:.2f} | {r['ttft50']:.2f} | {r['ttft95']:.2f} |")
    print(f"\ntokens/s at concurrency {results[-1]['concurrency']} / at {results[0]['concurrency']}: "
          f"{results[-1]['tps'] / results[0]['tps']:.2f}")


if __name__ == "__main__":
    run(main)
