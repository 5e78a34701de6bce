"""Defaults shared by more than one entry point, defined once.

finetune.py, infer.py, compare.py, evaluate.py, merge_lora.py, extend_vocab.py,
the data checker and the benchmarks take their defaults from here, and the shell
scripts pass on only what the user set, so changing a value here changes it everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASE_MODELS_DIR = ROOT / "base_models"
TEMPLATES_DIR = ROOT / "templates"

DEFAULT_BASE_NAME = "SmolLM2-135M-Instruct"  # the embedded default (utils/base_models.py fetches it)
BASE_MODEL = f"base_models/{DEFAULT_BASE_NAME}"
ADAPTER_DIR = "outputs/lora-fin"  # where finetune.py saves, and what scripts/infer.sh and comparison_test.sh ask
TRAIN_DATA = "instruction_data/fin_data.json"
INFER_DATA = "instruction_data/infer.json"
GENERAL_DATA = "evaluation_data/general.json"
EXAM_DIR = "evaluation_data/fin_exam"

# The prompt the project trains with when none is named. fin_template and ori_template keep the original
# Cornucopia's text (for its adapters); fin_qa puts an input in the prompt as background material.
PROMPT_TEMPLATE = "fin_qa"
# Long enough that no record of fin_data.json is cut (the longest multi-turn one has 1,225 SmolLM2 tokens).
CUTOFF_LEN = 1280

BATCH_SIZE = 16
MICRO_BATCH_SIZE = 4
NUM_EPOCHS = 3
LEARNING_RATE = 3e-4
LORA_R = 8
LORA_ALPHA = 16
LORA_DROPOUT = 0.05

# Continued pre-training (pretrain.py): the raw corpus, the length of the packed blocks, the learning rate.
PRETRAIN_DATA = "instruction_data/pretrain"
BLOCK_SIZE = 512
PRETRAIN_LEARNING_RATE = 2e-4

# Generation: one object, the defaults of infer, compare, evaluate (--method generate), serve and the web page.
# Each field can be overridden per run (flags) or per request (the API's fields, the page's settings).
@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    do_sample: bool = False  # greedy unless asked; the sampling settings below apply only when sampling
    temperature: float = 0.7  # Chinese-LLaMA-Alpaca's demo values
    top_p: float = 0.9
    top_k: int = 40
    num_beams: int = 1
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0


GENERATION = GenerationSettings()
INFER_BATCH_SIZE = 4
# Exam scoring is one forward per question (no generation): benchmarks/exam_speed.py measured batch 16 at least
# as fast as batch 8 (300 questions: 55 s vs 57 s, bf16, length-sorted), so exams batch more than generation.
EXAM_BATCH_SIZE = 16
