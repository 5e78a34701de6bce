"""Extend a base model's vocabulary with Chinese pieces learned from a corpus (as Chinese-LLaMA did).

    python extend_vocab.py --base_model base_models/SmolLM2-135M-Instruct \
        --corpus instruction_data/fin_data.json --vocab_size 4000 --output_dir base_models/SmolLM2-135M-zh

Then fine-tune OUTPUT_DIR as any base: finetune.py trains the resized embeddings and LM head
(modules_to_save) alongside LoRA, because OUTPUT_DIR/cornucopia.json says they are new.
"""
from __future__ import annotations

import json

from utils import settings
from utils.cli import run
from utils.vocab import extend_base


def main(base_model: str = settings.BASE_MODEL, corpus: str = settings.TRAIN_DATA,
         vocab_size: int = 4000, output_dir: str = "base_models/SmolLM2-135M-Instruct-zh",
         eval_path: str = settings.INFER_DATA):
    """Train a SentencePiece model of VOCAB_SIZE on CORPUS; add its Chinese pieces the base lacks."""
    print(json.dumps(extend_base(base_model, corpus, vocab_size, output_dir, eval_path or None), ensure_ascii=False,
                     indent=2))


if __name__ == "__main__":
    run(main)
