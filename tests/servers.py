"""What the serving tests share: a free port, a server process waited for until it answers, a random adapter."""
from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_process(command: list[str], ready_url: str, log_path: Path, cwd, timeout_s: float = 120):
    """Start `command`, wait until `ready_url` answers (failing with the log's tail if it dies or times out),
    and stop it afterwards."""
    log = open(log_path, "w+")
    proc = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                urllib.request.urlopen(ready_url, timeout=2)
                break
            except OSError:
                log.seek(0)
                assert proc.poll() is None and time.monotonic() < deadline, \
                    f"{' '.join(command[:3])} did not start:\n{log.read()[-3000:]}"
                time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def save_random_adapter(base_model: str, folder: Path, seed: int, scale: float = 0.02) -> str:
    """A LoRA adapter saved the project's way (PEFT + cornucopia.json, fin_qa template) with random LoRA B
    matrices instead of training, so that its answers differ from the base's; with scale 0 its LoRA B stays
    zero and it answers exactly as the base asked in fin_qa."""
    import torch

    from utils.adapters import attach_lora, write_run_info
    from utils.loading import load_base_model

    torch.manual_seed(seed)  # PEFT draws lora_A from the global generator: the same adapter on every run
    model = attach_lora(load_base_model(base_model), lora_r=8)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    model.save_pretrained(folder)
    write_run_info(folder, base_model=base_model, prompt_template="fin_qa", cutoff_len=256)
    return str(folder)
