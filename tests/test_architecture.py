"""The package's shape, read from the source with `ast`: imports flow one way, one loader, one error base, one
source of defaults."""
from __future__ import annotations

import ast
import inspect
import json
from pathlib import Path

from conftest import ROOT, run_script
from utils.settings import PROMPT_TEMPLATE

ENTRY_SCRIPTS = ["finetune.py", "infer.py", "compare.py", "evaluate.py", "merge_lora.py", "extend_vocab.py",
                 "pretrain.py"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((ROOT / "utils").rglob("*.py"))}


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The package modules a file imports, at any depth of its code (a function-level import counts too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from utils import x` imports utils.x when x is a module, else a name of utils/__init__.
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imported_modules(path, known) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, f"import cycle: {' -> '.join(find_cycle(import_graph()))}"


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_only_command_modules_import_the_command_line_layer():
    offenders = [name for name, deps in import_graph().items()
                 if "utils.cli" in deps and not name.endswith("__main__")]
    assert offenders == []


def test_every_model_and_tokenizer_load_goes_through_loading_or_adapters():
    """`X.from_pretrained(` of a model, tokenizer or adapter class appears only in utils/loading.py and utils/adapters.py."""
    allowed = {ROOT / "utils" / "loading.py", ROOT / "utils" / "adapters.py"}
    loaders = {"AutoModelForCausalLM", "AutoTokenizer", "AutoConfig", "PeftModel", "AutoModel"}
    offenders = []
    for path in [*package_modules().values(), *(ROOT / name for name in ENTRY_SCRIPTS),
                 *sorted((ROOT / "benchmarks").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr in ("from_pretrained", "from_config")
                    and isinstance(node.value, ast.Name) and node.value.id in loaders and path not in allowed):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []


def test_every_error_class_derives_from_the_one_base():
    from utils.errors import CornucopiaError

    errors = []
    for name in package_modules():
        module = __import__(name, fromlist=["_"])
        errors += [cls for cls_name, cls in vars(module).items()
                   if inspect.isclass(cls) and cls_name.endswith("Error") and cls.__module__ == name]
    assert len(errors) >= 8
    assert [cls.__name__ for cls in errors if not issubclass(cls, CornucopiaError)] == []


CHANGED_DEFAULTS = """
import inspect, json, sys
import dataclasses
import utils.settings as s
s.CUTOFF_LEN, s.BASE_MODEL, s.PROMPT_TEMPLATE = 77, "base_models/Other", "alpaca"
s.GENERATION = dataclasses.replace(s.GENERATION, max_new_tokens=33)
import finetune, infer, compare, evaluate, merge_lora, extend_vocab
from utils.data.__main__ import check
from utils import generation, reference_loss, data
out = {}
for name, fn in [("finetune", finetune.train), ("infer", infer.main), ("compare", compare.main),
                 ("evaluate", evaluate.main), ("merge_lora", merge_lora.main), ("extend_vocab", extend_vocab.main),
                 ("check", check), ("generate", generation.generate),
                 ("reference_loss", reference_loss.reference_loss), ("check_file", data.check.check_file)]:
    out[name] = {k: p.default for k, p in inspect.signature(fn).parameters.items()
                 if k in ("cutoff_len", "base_model", "prompt_template")}
out["generate"]["max_new_tokens"] = inspect.signature(generation.generate).parameters["generation"].default.max_new_tokens
out["infer"]["max_new_tokens"] = generation.generation_settings().max_new_tokens
print(json.dumps(out))
"""


def test_a_default_changed_in_settings_changes_every_entry_point():
    """Defaults are read from utils/settings.py when the entry points are imported, not restated by hand."""
    done = run_script("-c", CHANGED_DEFAULTS)
    assert done.returncode == 0, done.stderr[-2000:]
    defaults = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("finetune", "infer", "compare", "evaluate", "merge_lora", "extend_vocab"):
        assert defaults[name]["base_model"] == "base_models/Other", name
    for name in ("finetune", "check", "reference_loss", "check_file"):
        assert defaults[name]["cutoff_len"] == 77, name
    assert defaults["finetune"]["prompt_template"] == defaults["check"]["prompt_template"] == "alpaca"
    assert defaults["infer"]["max_new_tokens"] == defaults["generate"]["max_new_tokens"] == 33


def test_shell_scripts_restate_no_default():
    """scripts/*.sh pass a flag on only when its variable is set, so the entry point's own default applies."""
    for script in ("finetune.sh", "infer.sh", "comparison_test.sh", "pretrain.sh"):
        code = [line for line in (ROOT / "scripts" / script).read_text(encoding="utf-8").splitlines()
                if not line.lstrip().startswith("#")]
        for value in ("SmolLM2-135M-Instruct", "1280", PROMPT_TEMPLATE, "3e-4", "256", "128", "False", "True"):
            assert not [line for line in code if value in line], (script, value)


def test_add_flag_passes_only_what_is_set():
    import subprocess

    done = subprocess.run(["bash", "-c", "source scripts/common.sh; SET=1; EMPTY=; add_flag --a SET; "
                           "add_flag --b UNSET; add_flag --c EMPTY; printf '%s|' \"${args[@]}\""],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.stdout == "--a|1|--c||"


def test_scripts_start_in_the_repository_with_its_interpreter(tmp_path):
    """scripts/common.sh, sourced from anywhere, makes the repository the working directory and picks .venv's
    python (python3 where there is none); a PYTHON the caller set wins."""
    import subprocess

    common = ROOT / "scripts" / "common.sh"
    show = f"source {common}; printf '%s|%s' \"$PWD\" \"$PYTHON\""
    venv = ROOT / ".venv" / "bin" / "python"
    done = subprocess.run(["bash", "-c", show], cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert done.stdout == f"{ROOT}|{venv if venv.exists() else 'python3'}"
    done = subprocess.run(["bash", "-c", show], cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": "/bin/sh"})
    assert done.stdout == f"{ROOT}|/bin/sh"
