"""Retrieval over the user's own documents: read (documents), normalize and chunk (text), index and search (index),
and ground answers with numbered, cited passages (answer). infer.py --index_dir, serve.py --index_dir and the web
page's document tab all use this one package."""
from utils.retrieval.answer import citations, grounded_record, public_passages
from utils.retrieval.documents import DocumentError, read_document
from utils.retrieval.index import DocumentIndex, RetrievalIndexError, open_or_create

__all__ = ["DocumentError", "DocumentIndex", "RetrievalIndexError", "citations", "grounded_record", "open_or_create",
           "public_passages", "read_document"]
