"""Export a Hugging Face model folder to GGUF for llama.cpp, with llama.cpp's own converter.

The converter (convert_hf_to_gguf.py, its `conversion` package and the matching
gguf-py) is taken from the llama-cpp-python source package on PyPI, which vendors
llama.cpp, and unpacked into .cache/llama.cpp/ once. f16, bf16, f32 and q8_0 come
from the converter; q4_0, q4_k_m and q5_k_m are then made from the f16 file with
llama.cpp's quantizer, which needs llama-cpp-python itself installed
(scripts/setup_llama_cpp.sh --runtime).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from utils.errors import CornucopiaError
from utils.settings import ROOT

logger = logging.getLogger(__name__)

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
# What `scripts/setup_llama_cpp.sh --runtime` installs: the same version with its OpenAI-compatible server
# (`python -m llama_cpp.server`, which needs the `server` extra's FastAPI, uvicorn and sse-starlette).
LLAMA_CPP_RUNTIME = LLAMA_CPP_PYTHON.replace("==", "[server]==")
CACHE = ROOT / ".cache" / "llama.cpp"
CONVERTER_TYPES = ("f16", "bf16", "f32", "q8_0")
# llama.cpp's quantization type ids (enum llama_ftype) for the types made from an f16 file.
QUANTIZED_TYPES = {"q4_0": 2, "q4_k_m": 15, "q5_k_m": 17}


class ExportError(CornucopiaError):
    """The GGUF converter or quantizer could not be fetched or failed."""


def ensure_converter() -> Path:
    """Path of convert_hf_to_gguf.py, unpacking it from the PyPI source package the first time."""
    script = Path(os.environ.get("LLAMA_CPP_CONVERTER", CACHE / "convert_hf_to_gguf.py"))
    if script.is_file():
        return script
    logger.info("Fetching llama.cpp's GGUF converter from the %s source package (PyPI)", LLAMA_CPP_PYTHON)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--quiet", "-d", tmp,
               LLAMA_CPP_PYTHON]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or not archives:
            raise ExportError(f"could not fetch llama.cpp's converter: `{' '.join(cmd)}` failed:\n{done.stderr[-1500:]}")
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        with tarfile.open(archives[0]) as archive:
            members = []
            for member in archive.getmembers():
                _, found, rest = member.name.partition("/vendor/llama.cpp/")
                if found and rest.startswith(wanted):
                    member.name = rest
                    members.append(member)
            CACHE.mkdir(parents=True, exist_ok=True)
            archive.extractall(CACHE, members=members, filter="data")
    if not script.is_file():
        raise ExportError(f"{LLAMA_CPP_PYTHON} did not contain vendor/llama.cpp/convert_hf_to_gguf.py")
    return script


def quantize(source: Path, target: Path, kind: str) -> None:
    try:
        import llama_cpp
    except ImportError as err:
        raise ExportError(f"--gguf {kind} needs llama.cpp's quantizer: run `bash scripts/setup_llama_cpp.sh "
                          f"--runtime` (builds {LLAMA_CPP_PYTHON}), or choose one of {', '.join(CONVERTER_TYPES)}") from err
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTIZED_TYPES[kind]
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise ExportError(f"llama.cpp could not quantize {source} to {kind}")


def export_gguf(model_dir, kind: str = "f16") -> Path:
    """MODEL_DIR/<folder name>-<kind>.gguf from the Hugging Face model in MODEL_DIR."""
    kind = kind.lower()
    if kind not in CONVERTER_TYPES and kind not in QUANTIZED_TYPES:
        raise ExportError(f"--gguf must be one of {', '.join(CONVERTER_TYPES + tuple(QUANTIZED_TYPES))}, not {kind!r}")
    model_dir = Path(model_dir)
    target = model_dir / f"{model_dir.name}-{kind}.gguf"
    convert_to = target if kind in CONVERTER_TYPES else model_dir / f"{model_dir.name}-f16.gguf"
    script = ensure_converter()
    cmd = [sys.executable, str(script), str(model_dir), "--outtype", kind if kind in CONVERTER_TYPES else "f16",
           "--outfile", str(convert_to)]
    logger.info("Converting %s to GGUF (%s) with llama.cpp's converter", model_dir, kind)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ExportError(f"llama.cpp's converter failed on {model_dir}:\n{done.stderr[-2000:]}")
    if kind in QUANTIZED_TYPES:
        quantize(convert_to, target, kind)
    logger.info("GGUF written: %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target
