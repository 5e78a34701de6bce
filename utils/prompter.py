"""Prompt templates: read `templates/<name>.json` and render or split prompts.

The same Prompter renders the prompt at training and at inference time, so the
model is asked exactly what it was taught to answer.
"""
from __future__ import annotations

import json
import logging
import re

from utils.errors import CornucopiaError
from utils.settings import PROMPT_TEMPLATE as DEFAULT_TEMPLATE
from utils.settings import TEMPLATES_DIR

logger = logging.getLogger(__name__)

# Not a file: renders with the base model's own chat template (tokenizer.chat_template).
CHAT_TEMPLATE = "chat"
# `response_split` (alpaca-lora's key) may be present too; nothing here needs it.
REQUIRED_KEYS = ("prompt_input", "prompt_no_input")
PLACEHOLDER = re.compile(r"\{(?:instruction|input)\}")


class TemplateError(CornucopiaError, ValueError):
    """A template name that does not exist, or a template file that cannot be used."""


def available_templates() -> list[str]:
    return sorted(p.stem for p in TEMPLATES_DIR.glob("*.json")) + [CHAT_TEMPLATE]


class Prompter:
    def __init__(self, template_name: str = DEFAULT_TEMPLATE, tokenizer=None):
        self.template_name = template_name or DEFAULT_TEMPLATE
        self.tokenizer = tokenizer
        if self.template_name == CHAT_TEMPLATE:
            if tokenizer is None or not getattr(tokenizer, "chat_template", None):
                raise TemplateError(
                    "Template 'chat' uses the base model's own chat template, but this "
                    "tokenizer has none. Choose one of: "
                    + ", ".join(t for t in available_templates() if t != CHAT_TEMPLATE)
                )
            self.template = None
            return
        path = TEMPLATES_DIR / f"{self.template_name}.json"
        if not path.is_file():
            raise TemplateError(
                f"Unknown prompt template '{self.template_name}' (no file {path}). "
                f"Available templates: {', '.join(available_templates())}."
            )
        try:
            self.template = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TemplateError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}")
        missing = [k for k in REQUIRED_KEYS if not isinstance(self.template.get(k), str)]
        if missing:
            raise TemplateError(f"{path}: template is missing the string field(s) {', '.join(missing)}")
        # A template that has no {input} slot would silently drop the record's input.
        if "{input}" not in self.template["prompt_input"]:
            raise TemplateError(f"{path}: 'prompt_input' must contain an {{input}} slot")

    def generate_prompt(self, instruction: str, input: str | None = None) -> str:
        """The prompt for one question (and its input)."""
        if self.template is None:
            content = f"{instruction}\n\n{input}" if input else instruction
            prompt = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
        elif input:
            prompt = self.template["prompt_input"].format(instruction=instruction, input=input)
        else:
            prompt = self.template["prompt_no_input"].format(instruction=instruction)
        return prompt

    def turns(self, record: dict) -> list[tuple[str, str]]:
        """(prompt, answer) for each turn of a record: its history, then its own question and answer.

        The record's `input` belongs to its last question. With a chat template the
        prompts are the pieces of the rendered conversation between the answers.
        """
        pairs = [(q, "", a) for q, a in record.get("history") or []]
        pairs.append((record["instruction"], record.get("input", ""), record.get("output", "")))
        if self.template is not None:
            return [(self.generate_prompt(q, i), a) for q, i, a in pairs]
        messages, emitted, turns = [], "", []
        eos = self.tokenizer.eos_token or ""
        for question, input, answer in pairs:
            messages.append({"role": "user", "content": f"{question}\n\n{input}" if input else question})
            full = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if not full.startswith(emitted):
                # e.g. templates that drop earlier reasoning or move the system prompt: the turns would not
                # concatenate to what inference renders, so training would teach another conversation.
                raise TemplateError(
                    f"the chat template of this tokenizer rewrites earlier turns of a conversation (turn "
                    f"{len(turns) + 1} of a {len(pairs)}-turn record does not extend the turns before it), so "
                    f"multi-turn records cannot be learned turn by turn with --prompt_template chat; choose a "
                    f"template file instead: " + ", ".join(t for t in available_templates() if t != CHAT_TEMPLATE))
            prompt = full[len(emitted):]
            turns.append((prompt, answer))
            emitted += prompt + answer + eos
            messages.append({"role": "assistant", "content": answer})
        return turns

    def stop_markers(self) -> list[str]:
        """Text that starts another turn of this template: generation stops there and the marker is not returned.

        From a template file: the first line of each prompt (where a new question begins) and the header line
        right before each slot and before the answer (`### 问题:`, `### 背景资料:`, `### 回答:` in fin_qa), read
        from the file, so every template stops at its own markers. With the base's chat template: the plain
        text lines between an answer and the next question; lines with special tokens stop as tokens
        (`stop_token_ids`).
        """
        if self.template is None:
            special = self.tokenizer.all_special_tokens
            lines = [line.strip() for line in self._chat_turn_separator().splitlines()]
            # A line with a special token (`<|im_start|>user`) is structure that stops as a token.
            return list(dict.fromkeys(line for line in lines if line and not any(t in line for t in special)))
        markers = []
        for key in ("prompt_no_input", "prompt_input"):
            segments = [seg for seg in PLACEHOLDER.split(self.template[key])]
            for k, segment in enumerate(segments):
                lines = [line.strip() for line in segment.splitlines() if line.strip()]
                if not lines:
                    continue
                if k == 0:
                    markers.append(lines[0])
                markers.append(lines[-1])
        return list(dict.fromkeys(markers))

    def stop_token_ids(self) -> list[int]:
        """Special tokens that open the next turn of the chat template (e.g. `<|im_start|>`); none for files."""
        if self.template is None:
            ids = self.tokenizer(self._chat_turn_separator(), add_special_tokens=False)["input_ids"]
            special = set(self.tokenizer.all_special_ids)
            return sorted({i for i in ids if i in special})
        return []

    def _chat_turn_separator(self) -> str:
        """What the chat template puts between an assistant's answer and the next user question."""
        answer, question = "ANSWER-7f3a", "QUESTION-9c1e"
        full = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Q"}, {"role": "assistant", "content": answer},
             {"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
        start, end = full.find(answer), full.find(question)
        return full[start + len(answer):end] if 0 <= start < end else ""

    def prompt_for(self, record: dict, eos_token: str = "") -> str:
        """The whole prompt to answer a record's last question, earlier turns (answers + EOS) included."""
        turns = self.turns(record)
        return "".join(p + a + eos_token for p, a in turns[:-1]) + turns[-1][0]
