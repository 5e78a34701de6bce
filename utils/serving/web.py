"""The web chat page: a Gradio app mounted on the API server's FastAPI app.

Two tabs share the one GenerationEngine the API uses (so a page user and an API client
are batched together, and no second model is loaded):
- Chat: a streaming conversation with the base or any adapter, with generation settings.
- Side by side: one question sent to two models at once (the base and an adapter, or two
  adapters), both answers streamed next to each other: the original project's comparison
  table, live. Each side keeps its own conversation, so follow-up questions work too.
- 文档问答 (with serve.py --index_dir): upload files into the document index, ask, and see the answer with
  the passages it was given, the cited ones marked with their file and page.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from utils.errors import CornucopiaError

logger = logging.getLogger(__name__)

TITLE = "Cornucopia 聚宝盆"
MAX_TOKENS_LIMIT = 2048
# Local fonts only: the default theme pulls Google Fonts, which a server without network cannot reach
# (and a page waiting on them renders late). Noto Sans CJK is Debian's fonts-noto-cjk.
FONTS = ["Noto Sans CJK SC", "Noto Sans SC", "PingFang SC", "Microsoft YaHei", "sans-serif"]
MONO_FONTS = ["Noto Sans Mono CJK SC", "monospace"]


def _messages(system: str, history: list[dict], question: str) -> list[dict]:
    """OpenAI-style messages: optional system prompt, earlier turns, the new question."""
    head = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    return head + [{"role": m["role"], "content": m["content"]} for m in history] + \
        [{"role": "user", "content": question}]


def _settings(max_tokens, temperature, top_p, repetition_penalty, no_repeat_ngram_size) -> dict:
    return {"max_tokens": int(max_tokens), "temperature": float(temperature), "top_p": float(top_p),
            "repetition_penalty": float(repetition_penalty), "no_repeat_ngram_size": int(no_repeat_ngram_size)}


async def stream_turn(engine, model: str, system: str, history: list[dict], question: str, settings: dict):
    """Yield the conversation after each streamed delta: earlier turns, the question, the growing answer."""
    import gradio as gr

    answer = {"role": "assistant", "content": ""}
    turns = history + [{"role": "user", "content": question}, answer]
    yield turns
    try:
        # aclosing: a stopped or disconnected page closes the engine's stream at once, which frees its slot.
        async with contextlib.aclosing(engine.stream_chat(model, _messages(system, history, question),
                                                          **settings)) as stream:
            async for delta in stream:
                answer["content"] += delta
                yield turns
    except CornucopiaError as err:
        raise gr.Error(str(err)) from err


async def stream_side_by_side(engine, models: tuple[str, str], system: str, histories: tuple[list, list],
                              question: str, settings: dict):
    """Yield (left, right) conversations while both answers stream at once.

    Both generations are started together, so the engine runs them in one batch; each delta
    from either side is shown as soon as it arrives.
    """
    import gradio as gr

    answers = [{"role": "assistant", "content": ""}, {"role": "assistant", "content": ""}]
    turns = [h + [{"role": "user", "content": question}, a] for h, a in zip(histories, answers)]
    yield turns[0], turns[1]
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(side: int) -> None:
        stream = engine.stream_chat(models[side], _messages(system, histories[side], question), **settings)
        try:
            async for delta in stream:
                await queue.put((side, delta))
            await queue.put((side, None))
        except Exception as err:  # handed to the consumer, which shows it
            await queue.put((side, err))
        finally:
            await stream.aclose()

    tasks = [asyncio.create_task(pump(0)), asyncio.create_task(pump(1))]
    try:
        running = 2
        while running:
            side, item = await queue.get()
            if item is None:
                running -= 1
                continue
            if isinstance(item, Exception):
                if isinstance(item, CornucopiaError):
                    raise gr.Error(f"{models[side]}: {item}") from item
                raise item
            answers[side]["content"] += item
            yield turns[0], turns[1]
    finally:
        # A stopped or disconnected page cancels both generations, which frees their slots in the engine.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def sources_markdown(passages: list[dict], cited: list[dict]) -> str:
    """The passages an answer was given, cited ones first and marked, each with its file and page."""
    if not passages:
        return "（没有检索到相关段落 No passage found）"
    numbers = [c["n"] for c in cited]
    order = numbers + [p["n"] for p in passages if p["n"] not in numbers]
    lines = []
    for n in order:
        p = passages[n - 1]
        mark = "**引用 cited**" if n in numbers else "未引用 not cited"
        lines.append(f"**[{n}]** {os.path.basename(p['file'])} 第{p['page']}页 · {mark}\n\n> {p['text']}")
    return "\n\n".join(lines)


async def ask_documents(engine, model: str, question: str, settings: dict):
    """Yield (answer so far, sources Markdown) while the answer over the retrieved passages streams."""
    import gradio as gr

    from utils.retrieval.answer import citations, public_passages

    try:
        job = engine.prepare_chat(model, [{"role": "user", "content": question}], retrieval={"top_k": engine.index_top_k},
                                  **settings)
        engine.submit(job)
    except CornucopiaError as err:
        raise gr.Error(str(err)) from err
    passages = public_passages(job.passages)
    answer = ""
    yield answer, sources_markdown(passages, [])
    async with contextlib.aclosing(engine.results(job)) as stream:
        async for delta in stream:
            answer += delta
            yield answer, sources_markdown(passages, [])
    yield answer, sources_markdown(passages, citations(answer, job.passages))


def add_uploads(engine, files) -> str:
    """Copy uploaded files next to the index (they must outlive the upload) and index them; a one-line report."""
    import shutil
    from pathlib import Path

    if not files:
        return "请先选择文件 Choose files first"
    uploads = Path(engine.index_dir) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    kept = []
    for item in files:
        source = Path(getattr(item, "name", item))
        target = uploads / source.name
        shutil.copyfile(source, target)
        kept.append(target)
    summary = engine.add_documents(kept)
    added = len(summary["added"]) + len(summary["changed"])
    report = f"已加入 {added} 个文件，索引共 {summary['chunks']} 段 · indexed {added} file(s), {summary['chunks']} chunks"
    problems = list(summary["failed"].values()) + summary["warnings"]
    return report + "".join(f"\n\n⚠ {p}" for p in problems)


def build_chat_page(engine):
    """The Gradio Blocks of the chat page for ENGINE (not yet mounted)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    ids = list(engine.model_ids())
    base = ids[0]
    other = ids[1] if len(ids) > 1 else ids[0]

    defaults = engine.defaults  # the page starts from the settings infer, compare and the API start from
    sampling = defaults.do_sample

    def settings_panel(prefix: str):
        with gr.Accordion("生成设置 Generation settings", open=False, elem_id=f"{prefix}-settings"):
            system = gr.Textbox(label="系统提示 System prompt (optional; used with the base's chat template, "
                                "adapters trained on a template ignore it as in training)", lines=2, value="",
                                elem_id=f"{prefix}-system")
            max_tokens = gr.Slider(1, MAX_TOKENS_LIMIT, value=defaults.max_new_tokens, step=1, label="max tokens",
                                   elem_id=f"{prefix}-max-tokens")
            temperature = gr.Slider(0.0, 2.0, value=defaults.temperature if sampling else 0.0, step=0.05,
                                    label="temperature (0 = greedy)", elem_id=f"{prefix}-temperature")
            top_p = gr.Slider(0.05, 1.0, value=defaults.top_p if sampling else 1.0, step=0.05, label="top_p",
                              elem_id=f"{prefix}-top-p")
            penalty = gr.Slider(1.0, 2.0, value=defaults.repetition_penalty, step=0.05,
                                label="repetition penalty (1 = off)", elem_id=f"{prefix}-repetition-penalty")
            ngram = gr.Slider(0, 32, value=defaults.no_repeat_ngram_size, step=1,
                              label="no repeat n-gram size (tokens; 0 = off)", elem_id=f"{prefix}-no-repeat-ngram")
        return system, max_tokens, temperature, top_p, penalty, ngram

    with gr.Blocks(title=TITLE, analytics_enabled=False) as page:
        gr.Markdown(f"## {TITLE}\n对话与对比：基础模型与 LoRA 适配器 · Chat with the base model and its LoRA adapters")
        with gr.Tab("对话 Chat", elem_id="tab-chat"):
            model = gr.Dropdown(ids, value=other, label="模型 Model (base or adapter)", elem_id="chat-model")
            chatbot = gr.Chatbot(label="对话 Conversation", elem_id="chat-box", height=420)
            history = gr.State([])
            with gr.Row():
                question = gr.Textbox(placeholder="输入问题 Ask a question…", show_label=False, scale=5,
                                      elem_id="chat-input")
                send = gr.Button("发送 Send", variant="primary", scale=1, elem_id="chat-send")
                stop = gr.Button("停止 Stop", scale=1, elem_id="chat-stop")
                clear = gr.Button("清空 Clear", scale=1, elem_id="chat-clear")
            system, max_tokens, temperature, top_p, penalty, ngram = settings_panel("chat")

        async def chat(model, system, history, question, max_tokens, temperature, top_p, penalty, ngram):
            question = (question or "").strip()
            if not question:
                yield history, history, ""
                return
            async for turns in stream_turn(engine, model, system, history, question,
                                           _settings(max_tokens, temperature, top_p, penalty, ngram)):
                yield turns, turns, ""

        inputs = [model, system, history, question, max_tokens, temperature, top_p, penalty, ngram]
        outputs = [chatbot, history, question]
        events = [send.click(chat, inputs, outputs), question.submit(chat, inputs, outputs)]
        stop.click(None, cancels=events)
        clear.click(lambda: ([], []), None, [chatbot, history], cancels=events)
        # A new conversation when the model changes: the history was another model's.
        model.change(lambda: ([], []), None, [chatbot, history], cancels=events)

        with gr.Tab("并排对比 Side by side", elem_id="tab-compare"):
            with gr.Row():
                model_a = gr.Dropdown(ids, value=base, label="左 Left model", elem_id="compare-model-a")
                model_b = gr.Dropdown(ids, value=other, label="右 Right model", elem_id="compare-model-b")
            with gr.Row():
                box_a = gr.Chatbot(label=base, elem_id="compare-box-a", height=420)
                box_b = gr.Chatbot(label=other, elem_id="compare-box-b", height=420)
            history_a, history_b = gr.State([]), gr.State([])
            with gr.Row():
                question2 = gr.Textbox(placeholder="同一问题发给两个模型 One question to both models…",
                                       show_label=False, scale=5, elem_id="compare-input")
                send2 = gr.Button("发送 Send", variant="primary", scale=1, elem_id="compare-send")
                stop2 = gr.Button("停止 Stop", scale=1, elem_id="compare-stop")
                clear2 = gr.Button("清空 Clear", scale=1, elem_id="compare-clear")
            system2, max_tokens2, temperature2, top_p2, penalty2, ngram2 = settings_panel("compare")

        async def compare(model_a, model_b, system, history_a, history_b, question, max_tokens, temperature, top_p,
                          penalty, ngram):
            question = (question or "").strip()
            if not question:
                yield history_a, history_b, history_a, history_b, ""
                return
            async for left, right in stream_side_by_side(engine, (model_a, model_b), system, (history_a, history_b),
                                                         question, _settings(max_tokens, temperature, top_p,
                                                                             penalty, ngram)):
                yield left, right, left, right, ""

        inputs2 = [model_a, model_b, system2, history_a, history_b, question2, max_tokens2, temperature2, top_p2,
                   penalty2, ngram2]
        outputs2 = [box_a, box_b, history_a, history_b, question2]
        events2 = [send2.click(compare, inputs2, outputs2), question2.submit(compare, inputs2, outputs2)]
        stop2.click(None, cancels=events2)
        clear2.click(lambda: ([], [], [], []), None, [box_a, box_b, history_a, history_b], cancels=events2)
        # A new pair of conversations when a model changes; each side is labelled with its model.
        for side in (model_a, model_b):
            side.change(lambda a, b: (gr.Chatbot(value=[], label=a), gr.Chatbot(value=[], label=b), [], []),
                        [model_a, model_b], [box_a, box_b, history_a, history_b], cancels=events2)
        if engine.index is not None:
            with gr.Tab("文档问答 Documents", elem_id="tab-docs"):
                with gr.Row():
                    uploads = gr.File(label="上传文档 Upload documents (PDF, DOCX, HTML, TXT, MD, JSONL)",
                                      file_count="multiple", elem_id="docs-files", scale=4)
                    add = gr.Button("加入索引 Add to the index", elem_id="docs-add", scale=1)
                status = gr.Markdown(elem_id="docs-status")
                doc_model = gr.Dropdown(ids, value=other, label="模型 Model", elem_id="docs-model")
                with gr.Row():
                    doc_question = gr.Textbox(placeholder="就文档提问 Ask about your documents…", show_label=False,
                                              scale=5, elem_id="docs-input")
                    doc_send = gr.Button("提问 Ask", variant="primary", scale=1, elem_id="docs-send")
                doc_answer = gr.Markdown(elem_id="docs-answer")
                doc_sources = gr.Markdown(elem_id="docs-sources")
                _, doc_tokens, doc_temperature, doc_top_p, doc_penalty, doc_ngram = settings_panel("docs")

            add.click(lambda files: add_uploads(engine, files), [uploads], [status])

            async def ask(model, question, max_tokens, temperature, top_p, penalty, ngram):
                question = (question or "").strip()
                if not question:
                    yield "", ""
                    return
                async for answer, sources in ask_documents(engine, model, question,
                                                           _settings(max_tokens, temperature, top_p, penalty, ngram)):
                    yield answer, sources

            doc_inputs = [doc_model, doc_question, doc_tokens, doc_temperature, doc_top_p, doc_penalty, doc_ngram]
            doc_send.click(ask, doc_inputs, [doc_answer, doc_sources])
            doc_question.submit(ask, doc_inputs, [doc_answer, doc_sources])
    page.queue(default_concurrency_limit=None)  # the engine bounds concurrency; the page must not serialize users
    return page


def mount_chat_page(app, engine, path: str = "/", api_key: str | None = None):
    """Mount the chat page for ENGINE on the FastAPI APP at PATH; returns APP.

    Mount it after the API's routes: a page at "/" takes every path no earlier route matched. With API_KEY the
    page asks for a login whose password is that key (any user name), so the page opens no way around the key.
    """
    import hmac

    import gradio as gr

    page = build_chat_page(engine)
    theme = gr.themes.Soft(font=FONTS, font_mono=MONO_FONTS)
    auth = None
    if api_key:
        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), api_key.encode())
    logger.info("Web chat page at %s (models: %s%s)", path, ", ".join(engine.model_ids()),
                "; login with the API key" if api_key else "")
    return gr.mount_gradio_app(app, page, path=path, theme=theme, ssr_mode=False, footer_links=[], auth=auth,
                               auth_message="密码为服务的 API key · The password is the server's API key" if api_key else None)
