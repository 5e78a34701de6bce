"""bf16 only where the hardware multiplies it natively; 8-bit and checkpointing where they pay; threads."""
import json
import os
import logging

import pytest
import torch

import finetune
from utils import hardware, loading


def cpu_probes(monkeypatch, amx=False, avx512_bf16=False):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)


@pytest.mark.parametrize("amx, avx512_bf16, native", [(False, False, False), (True, False, True),
                                                       (False, True, True), (True, True, True)])
def test_cpu_bf16_is_chosen_only_with_amx_or_avx512_bf16(monkeypatch, amx, avx512_bf16, native):
    cpu_probes(monkeypatch, amx, avx512_bf16)
    assert hardware.native_bf16("cpu") is native
    assert hardware.resolve_bf16(None, "cpu") is native
    assert loading.compute_dtype(torch.device("cpu")) == (torch.bfloat16 if native else torch.float32)
    assert hardware.resolve_bf16(False, "cpu") is False  # the explicit opt-out always wins


def test_a_missing_or_failing_probe_means_no_bf16(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)

    def broken():
        raise RuntimeError("cpuinfo unavailable")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken)
    assert hardware.cpu_bf16_features() == [] and not hardware.native_bf16("cpu")


def test_forcing_bf16_without_native_support_warns(monkeypatch, caplog):
    cpu_probes(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="utils.hardware"):
        assert hardware.resolve_bf16(True, "cpu") is True
    assert "no native bf16" in caplog.text


@pytest.mark.parametrize("supported", [True, False])
def test_gpu_bf16_follows_cuda_support(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: supported)
    assert hardware.native_bf16("cuda") is supported
    assert loading.compute_dtype(torch.device("cuda")) == (torch.bfloat16 if supported else torch.float16)


def test_8bit_by_default_on_gpu_and_only_when_memory_is_short_on_cpu(tiny_model, monkeypatch):
    assert hardware.resolve_load_8bit(None, "cuda", tiny_model)[0] is True
    load_8bit, why = hardware.resolve_load_8bit(None, "cpu", tiny_model)
    assert load_8bit is False and "slower" in why
    # The same weights on a machine with almost no free memory: 8-bit.
    monkeypatch.setattr(hardware, "available_memory_bytes", lambda: hardware.weights_bytes(tiny_model))
    assert hardware.resolve_load_8bit(None, "cpu", tiny_model)[0] is True
    assert hardware.resolve_load_8bit(False, "cpu", tiny_model)[0] is False
    assert hardware.resolve_load_8bit(True, "cpu", tiny_model) == (True, "--load_8bit given")


def test_checkpointing_auto_follows_tokens_per_micro_batch():
    limit = hardware.CHECKPOINTING_TOKENS
    assert hardware.resolve_gradient_checkpointing(None, limit // 4, 4) is True
    assert hardware.resolve_gradient_checkpointing(None, limit // 4 - 1, 4) is False
    assert hardware.resolve_gradient_checkpointing(False, 4 * limit, 4) is False
    assert hardware.resolve_gradient_checkpointing(True, 8, 1) is True


def test_threads_are_physical_cores(monkeypatch):
    cores = hardware.physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    try:
        assert hardware.configure_threads() == cores == torch.get_num_threads()
        assert hardware.configure_threads(processes_per_machine=cores * 2) == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("native", [False, True])
def test_finetune_defaults_resolve_as_documented(tiny_model, train_file, tmp_path, monkeypatch, native):
    """Default flags on a CPU: full-precision weights, bf16 exactly where native, no checkpointing for short batches."""
    cpu_probes(monkeypatch, amx=native)
    loaded = {}
    original = loading.load_base_model

    def spy(*args, **kwargs):
        loaded.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(finetune, "load_base_model", spy)
    out = tmp_path / "lora"
    finetune.train(base_model=tiny_model, data_path=train_file, output_dir=str(out), max_steps=2, save_steps=2,
                   micro_batch_size=2, batch_size=2, cutoff_len=128, learning_rate=1e-2)
    info = json.loads((out / "cornucopia.json").read_text())
    assert info["load_8bit"] is False and info["bf16"] is native and info["gradient_checkpointing"] is False
    assert loaded["load_8bit"] is False and loaded["dtype"] == (torch.bfloat16 if native else torch.float32)
