import pytest

from conftest import run_script
from utils.cli import parse_bool, parse_list
from utils.errors import UsageError


@pytest.mark.parametrize("value,expected", [(True, True), (False, False), (1, True), (0, False), ("True", True),
                                            ("false", False), (" yes ", True), ("off", False), ("", False)])
def test_parse_bool_accepts_what_fire_and_users_pass(value, expected):
    assert parse_bool(value, "flag") is expected


@pytest.mark.parametrize("value", ["maybe", 2, 0.5, [True]])
def test_parse_bool_refuses_the_rest_naming_the_flag(value):
    with pytest.raises(UsageError, match="--use_lora expects True or False"):
        parse_bool(value, "use_lora")


@pytest.mark.parametrize("value,expected", [
    ("[q_proj,v_proj]", ["q_proj", "v_proj"]), ("q_proj, v_proj", ["q_proj", "v_proj"]),
    (("q_proj", "v_proj"), ["q_proj", "v_proj"]), ("['a','b']", ["a", "b"]), ("", []), (None, []), ("one", ["one"])])
def test_parse_list(value, expected):
    assert parse_list(value) == expected


RAISES = """
import sys
from utils.cli import run
from utils.{module} import {error}
def main(path: str = "x.json"):
    raise {error}(f"{{path}}: record 3: field 'output' is empty")
run(main)
"""


@pytest.mark.parametrize("module,error", [("data", "DataError"), ("prompter", "TemplateError"),
                                          ("loading", "ModelLoadError"), ("training", "TrainingError"),
                                          ("exam", "ExamError"), ("gguf_export", "ExportError"),
                                          ("adapters", "AdapterError"), ("errors", "UsageError")])
def test_run_turns_every_project_error_into_one_line_and_exit_1(module, error):
    done = run_script("-c", RAISES.format(module=module, error=error), "--path", "d.json")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "error: d.json: record 3: field 'output' is empty"
    assert "Traceback" not in done.stderr


def test_run_leaves_a_bug_its_traceback():
    done = run_script("-c", "from utils.cli import run\ndef main():\n    raise KeyError('bug')\nrun(main)")
    assert done.returncode == 1 and "Traceback" in done.stderr and "KeyError" in done.stderr
