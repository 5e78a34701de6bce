"""Information extraction (NER, relations, events): corpus readers -> instruction records -> F1 scoring.

    python -m utils.ie convert --format bio|boson|duie|finre|duee INPUT --output OUT.json [--schema FILE]

`sources` reads each corpus's own published format into samples, `instructions` turns samples into
instruction records whose answers are canonical JSON, `metrics` parses a model's answers and scores them.
"""
from utils.ie.errors import IEError
from utils.ie.instructions import FORMATS, convert_file, records_from_samples
from utils.ie.metrics import parse_answer, score_ie

__all__ = ["IEError", "FORMATS", "convert_file", "records_from_samples", "parse_answer", "score_ie"]
