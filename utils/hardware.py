"""What this machine computes fast, detected rather than guessed: native bf16, 8-bit that pays, threads.

Rules (README "Speed" / "速度"):
- bf16: on a GPU that supports it (`torch.cuda.is_bf16_supported()`), and on a CPU with a native bf16 matrix
  multiply (AMX tiles or AVX512-BF16, as torch's own CPU probes report). Elsewhere bf16 is emulated and
  much slower than float32, so float32 is used. `--bf16 True/False` overrides the detection.
- 8-bit (bitsandbytes LLM.int8): pays on a GPU, where it halves the weights' memory. On a CPU its matrix
  multiply is slower than full precision, so `--load_8bit` left at its default loads full precision unless
  the full-precision weights would take more than half of the memory available.
- gradient checkpointing: recomputing activations costs about a third of the step time, so it is on by
  default only when a micro-batch holds many tokens (cutoff_len x micro_batch_size >= CHECKPOINTING_TOKENS).
- threads: one per physical core (torch's default on most machines; set here when it differs).

CORNUCOPIA_NO_BF16=1 makes a CPU with native bf16 behave as one without (every automatic choice takes the float32
path), so the path most laptops take can be measured on a machine that has bf16.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

# Tokens per micro-batch (cutoff_len x micro_batch_size) from which gradient checkpointing is on by default.
# At 1,024 (cutoff 256 x 4) it only cost time (benchmarks/train_speed.py: 220 vs 293 tokens/s in bf16); at 5,120
# (cutoff 1280 x 4) the earlier quickstart measurement (README, measured figures) ran faster with it and peaked at
# 3.0 GB instead of 7.6 GB. The threshold between the two is a choice, not a measurement.
CHECKPOINTING_TOKENS = 4096
# On a CPU, 8-bit is chosen by default only when the full-precision weights exceed this share of free memory.
FULL_PRECISION_MEMORY_SHARE = 0.5


def _probe(name: str) -> bool:
    """One of torch's private CPU feature probes; False where this torch version lacks it."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except Exception:  # a probe that cannot run says nothing about the CPU
        return False


def cpu_bf16_features() -> list[str]:
    """The native bf16 matrix-multiply features this CPU has (empty: bf16 would be emulated)."""
    if os.environ.get("CORNUCOPIA_NO_BF16", "") not in ("", "0"):
        return []
    return [feature for feature, probe in (("AMX", "_is_amx_tile_supported"),
                                           ("AVX512-BF16", "_is_avx512_bf16_supported")) if _probe(probe)]


def native_bf16(device: torch.device | str = "cpu") -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_features())
    return False


def describe(device: torch.device | str = "cpu") -> str:
    """One line for logs and benchmark tables: the device, its bf16 support and the threads used."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (bf16 {'native' if native_bf16(device) else 'not supported'})"
    features = cpu_bf16_features()
    return (f"CPU {cpu_model()} ({physical_cores()} physical cores, {torch.get_num_threads()} threads, "
            f"{'bf16 native: ' + ' + '.join(features) if features else 'no native bf16'})")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def resolve_bf16(flag, device: torch.device | str = "cpu", log: bool = True) -> bool:
    """--bf16, the one place it is decided: None (auto) = bf16 exactly where the hardware has it; True/False as given."""
    device = torch.device(device)
    if flag is None:
        chosen = native_bf16(device)
        if log:
            logger.info("bf16 %s on %s (auto; --bf16 False/True overrides)", "on" if chosen else "off",
                        describe(device))
        return chosen
    if flag and not native_bf16(device):
        logger.warning("--bf16 True on %s, which has no native bf16: expect it to be much slower than float32",
                       describe(device))
    return bool(flag)


def weights_bytes(model_path: str) -> int:
    """Size of a local model folder's weight files (0 for a hub id: not known before download)."""
    folder = Path(model_path)
    if not folder.is_dir():
        return 0
    return sum(f.stat().st_size for pattern in ("*.safetensors", "*.bin") for f in folder.glob(pattern))


def available_memory_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resolve_load_8bit(flag, device: torch.device | str, model_path: str, full_precision_bytes_per_param: int = 4):
    """(load in 8-bit?, why): --load_8bit None (the default) = 8-bit where it pays; True/False as given."""
    device = torch.device(device)
    if flag is not None:
        return bool(flag), "--load_8bit given"
    if device.type == "cuda":
        return True, "8-bit halves the weights' GPU memory"
    # Weight files hold 2 bytes per parameter (bf16/f16) or 4 (f32); estimate the in-memory size from the files.
    on_disk = weights_bytes(model_path)
    full = on_disk * full_precision_bytes_per_param // 2 if on_disk else 0
    free = available_memory_bytes()
    if full and full > FULL_PRECISION_MEMORY_SHARE * free:
        return True, (f"the full-precision weights (~{full / 2**30:.1f} GiB) would take more than half of the "
                      f"{free / 2**30:.1f} GiB of memory available")
    return False, ("on a CPU 8-bit compute is slower than full precision and the full-precision weights fit "
                   f"({full / 2**30:.2f} of {free / 2**30:.1f} GiB available); --load_8bit True forces 8-bit")


def resolve_gradient_checkpointing(flag, cutoff_len: int, micro_batch_size: int) -> bool:
    """--gradient_checkpointing None (auto) = on when a micro-batch holds >= CHECKPOINTING_TOKENS tokens."""
    if flag is not None:
        return bool(flag)
    chosen = cutoff_len * micro_batch_size >= CHECKPOINTING_TOKENS
    logger.info("Gradient checkpointing %s (auto: cutoff_len %d x micro_batch_size %d %s %d tokens)",
                "on" if chosen else "off", cutoff_len, micro_batch_size, ">=" if chosen else "<",
                CHECKPOINTING_TOKENS)
    return chosen


def physical_cores() -> int:
    """Distinct (package, core) pairs among the CPUs this process may use; the CPU count where unknown."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores, processor, package = set(), None, "0"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines() + [""]:
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "processor":
                processor = int(value)
            elif key == "physical id":
                package = value
            elif key == "core id" and processor in allowed:
                cores.add((package, value))
    except (OSError, ValueError):
        cores = set()
    return len(cores) or len(allowed) or 1


def configure_threads(processes_per_machine: int = 1) -> int:
    """One torch thread per physical core (shared among this machine's processes), unless OMP_NUM_THREADS is set."""
    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    wanted = max(1, physical_cores() // max(1, processes_per_machine))
    if torch.get_num_threads() != wanted:
        logger.info("torch threads: %d -> %d (one per physical core)", torch.get_num_threads(), wanted)
        torch.set_num_threads(wanted)
    return wanted
