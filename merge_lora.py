"""Merge a LoRA adapter into its base model and save a plain Hugging Face model.

    python merge_lora.py --base_model base_models/SmolLM2-135M-Instruct --lora_weights outputs/quickstart/lora \
        --output_dir outputs/merged --dtype float16

The result loads with AutoModelForCausalLM.from_pretrained(OUTPUT_DIR) alone; infer.py and
compare.py take it as --base_model. OUTPUT_DIR/cornucopia.json records how it was made.
"""
from __future__ import annotations

from utils.cli import run


def main(base_model: str = "base_models/SmolLM2-135M-Instruct", lora_weights: str = "",
         output_dir: str = "outputs/merged", dtype: str = "float16"):
    """Write BASE_MODEL + LORA_WEIGHTS, merged, to OUTPUT_DIR in DTYPE (float16, bfloat16 or float32)."""
    from utils.merging import merge_adapter

    if not lora_weights:
        raise SystemExit("error: --lora_weights is required: the adapter folder to merge")
    print(merge_adapter(base_model, lora_weights, output_dir, dtype))


if __name__ == "__main__":
    run(main)
