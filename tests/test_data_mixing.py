"""Several data files in one run: `--data_path a.json,b.json:N,c.json:W`, drawn with the seed."""
from __future__ import annotations

import json

import pytest

import finetune
from conftest import RECORDS, run_script, write_json
from utils.data.mixing import MixItem, draw, load_data_mix, mix, parse_data_path
from utils.data.records import DataError


@pytest.mark.parametrize("spec,expected", [
    ("a.json", [MixItem("a.json")]),
    ("a.json,b.json:200, c.json:0.5", [MixItem("a.json"), MixItem("b.json", count=200), MixItem("c.json", weight=0.5)]),
    ("data/x.json:2.0", [MixItem("data/x.json", weight=2.0)]),
    ("[a.json,b.json:3]", [MixItem("a.json"), MixItem("b.json", count=3)]),
    (("a.json", "b.json:3"), [MixItem("a.json"), MixItem("b.json", count=3)]),
    ("org/name", [MixItem("org/name")]),
    ("c:/data/a.json", [MixItem("c:/data/a.json")]),   # a ':' not followed by a number is part of the path
])
def test_parse_data_path(spec, expected):
    assert parse_data_path(spec) == expected


@pytest.mark.parametrize("spec,message", [
    ("a.json,,b.json", "item 2 is empty"),
    ("a.json:0", "at least 1"),
    ("a.json:0.0", "above 0"),
    ("a.json:-3", "whole number of records"),
    ("a.json:1e3", "whole number of records"),
    ("", "--data_path is empty"),
])
def test_parse_data_path_refuses(spec, message):
    with pytest.raises(DataError, match=message):
        parse_data_path(spec)


def test_counts_and_weights_draw_with_the_seed():
    a, b = [{"n": f"a{k}"} for k in range(10)], [{"n": f"b{k}"} for k in range(4)]
    items = [(MixItem("a", count=3), a), (MixItem("b", weight=2.5), b)]
    records, info = mix(items, seed=1)
    drawn_a, drawn_b = records[:3], records[3:]
    assert len(set(r["n"] for r in drawn_a)) == 3 and drawn_a == sorted(drawn_a, key=a.index)  # no repeat, file order
    assert len(drawn_b) == 10 and drawn_b[:8] == b + b  # 2.5 x 4: two whole copies, then 2 of the 4
    assert info == [{"path": "a", "records_in_file": 10, "used": 3, "count": 3},
                    {"path": "b", "records_in_file": 4, "used": 10, "weight": 2.5}]
    assert mix(items, seed=1)[0] == records
    assert any(mix(items, seed=s)[0] != records for s in range(2, 6))
    assert mix([(MixItem("a"), a)], seed=1) == (a, [{"path": "a", "records_in_file": 10, "used": 10}])


def test_draw_above_the_file_size_upsamples():
    rows = list(range(3))
    assert draw(rows, 7, __import__("random").Random(0))[:6] == [0, 1, 2, 0, 1, 2]
    assert len(draw(rows, 7, __import__("random").Random(0))) == 7


def test_every_file_is_checked_and_an_error_names_it(tmp_path):
    good = write_json(tmp_path / "good.json", RECORDS)
    bad = write_json(tmp_path / "bad.json", [RECORDS[0], {"instruction": "q"}])
    with pytest.raises(DataError, match=r"bad.json: record 2: field 'output' is missing"):
        load_data_mix(f"{good},{bad}:1")
    with pytest.raises(DataError, match=r"missing.json: data file not found"):
        load_data_mix(f"{good},{tmp_path / 'missing.json'}")
    records, info = load_data_mix(f"{good}:2,{good}:0.5", seed=3)
    assert len(records) == 6 and [i["used"] for i in info] == [2, 4]


def test_the_checker_checks_each_file_and_shows_the_mix(tmp_path):
    a = write_json(tmp_path / "a.json", RECORDS)
    b = write_json(tmp_path / "b.json", RECORDS[:4])
    done = run_script("-m", "utils.data", "check", f"{a},{b}:2.0", "--seed", "5")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"{a}: 8 usable record(s)" in done.stdout and f"{b}: 4 usable record(s)" in done.stdout
    assert f"mix (seed 5): {a} 8 of 8, {b} 8 of 4 -> 16 records" in done.stdout
    write_json(b, [{"instruction": "q"}])
    done = run_script("-m", "utils.data", "check", f"{a},{b}")
    assert done.returncode == 1 and f"{b}: record 1: field 'output' is missing" in done.stdout


def test_finetune_trains_on_a_mix_and_records_it(tiny_model, tmp_path):
    qa = write_json(tmp_path / "qa.json", RECORDS)
    ie = write_json(tmp_path / "ie.json", [
        {"instruction": "找出公司实体", "input": f"公司{k}号发布公告", "output": json.dumps({"公司": [f"公司{k}号"]},
                                                                                    ensure_ascii=False), "task": "ner"}
        for k in range(6)])
    out = tmp_path / "lora"
    finetune.train(base_model=tiny_model, data_path=f"{qa},{ie}:3", output_dir=str(out), load_8bit=False,
                   micro_batch_size=2, batch_size=2, cutoff_len=96, max_steps=2, save_steps=2, seed=7)
    info = json.loads((out / "cornucopia.json").read_text(encoding="utf-8"))
    assert info["data_mix"] == [{"path": str(qa), "records_in_file": 8, "used": 8},
                                {"path": str(ie), "records_in_file": 6, "used": 3, "count": 3}]
    assert info["seed"] == 7 and info["data_path"] == f"{qa},{ie}:3"
