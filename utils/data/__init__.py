"""Instruction data, flowing one way: records (read, validate, split) -> tokenize (prompt masked) -> check.

`python -m utils.data check PATH` runs the checker (utils/data/__main__.py).
"""
from utils.data.records import DataError, Problem, Row, check_rows, load_records, raise_if_unusable, split_train_val
from utils.data.tokenize import IGNORE_INDEX, build_dataset, tokenize_record

__all__ = ["DataError", "Problem", "Row", "check_rows", "load_records", "raise_if_unusable", "split_train_val",
           "IGNORE_INDEX", "build_dataset", "tokenize_record"]
