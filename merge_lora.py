"""Merge a LoRA adapter into its base model and save a plain Hugging Face model.

    python merge_lora.py --base_model base_models/SmolLM2-135M-Instruct --lora_weights outputs/quickstart/lora \
        --output_dir outputs/merged --dtype float16

The result loads with AutoModelForCausalLM.from_pretrained(OUTPUT_DIR) alone; infer.py and
compare.py take it as --base_model. OUTPUT_DIR/cornucopia.json records how it was made.
With --gguf f16 (or q8_0, ...) it is also converted for llama.cpp by llama.cpp's own converter.
"""
from __future__ import annotations

from utils import settings
from utils.adapters import read_run_info, write_run_info
from utils.cli import bool_flags, run
from utils.errors import UsageError
from utils.gguf_export import export_gguf
from utils.merging import merge_adapter


@bool_flags
def main(base_model: str = settings.BASE_MODEL, lora_weights: str = "", output_dir: str = "outputs/merged",
         dtype: str = "float16", gguf: str = "", trust_remote_code=False):
    """Write BASE_MODEL + LORA_WEIGHTS, merged, to OUTPUT_DIR in DTYPE (float16, bfloat16 or float32).

    --gguf f16|bf16|q8_0 (or q4_0|q4_k_m|q5_k_m with llama-cpp-python installed) also writes
    OUTPUT_DIR/<name>-<type>.gguf for llama.cpp.
    """
    if not lora_weights:
        raise UsageError("--lora_weights is required: the adapter folder to merge")
    merged = merge_adapter(base_model, lora_weights, output_dir, dtype,
                           trust_remote_code)
    print(merged)
    if gguf:
        path = export_gguf(merged, gguf)
        info = read_run_info(merged)
        info.pop("created", None), info.pop("versions", None)
        write_run_info(merged, **info, gguf=path.name, gguf_type=gguf)
        print(path)


if __name__ == "__main__":
    run(main)
