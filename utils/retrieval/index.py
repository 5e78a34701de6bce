"""The document index: chunks with their file, page and offsets; BM25 over jieba words; optional dense vectors.

Saved in a folder as versions: each save writes a complete `v<N>/` and then points `CURRENT` at it (an atomic
rename), so a reader never sees half an index and a crash mid-save leaves the previous one in place.
Updating reads only new and changed files (size and mtime first, then the SHA-256 of the bytes); chunks of
unchanged files keep their stored words and vectors, a file that no longer exists is dropped.
BM25 is bm25s (a maintained library, not hand-written); dense retrieval is sentence-transformers on a local model
folder the user gives (e.g. bge-small-zh, m3e), fused with BM25 by reciprocal-rank fusion.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import jieba

from utils.errors import CornucopiaError
from utils.files import atomic_write_json, atomic_write_text
from utils.retrieval.documents import DocumentError, find_documents, read_document
from utils.retrieval.text import chunk_text, normalize

logger = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)

FORMAT = 1
RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.)
PUNCTUATION = set("，。！？；：、（）【】《》“”‘’…—,.!?;:()[]<>\"'|-/%+*=·")


class RetrievalIndexError(CornucopiaError):
    """An index folder that is missing, damaged or built with other settings."""


@dataclass
class Chunk:
    id: int
    file: str
    page: int
    start: int  # character offsets of the chunk in the page's normalized text
    end: int
    text: str


def words(text: str) -> list[str]:
    """BM25 terms: jieba's search-engine cut of the normalized text, punctuation and spaces left out, ASCII lowered."""
    return [w.lower() for w in jieba.cut_for_search(normalize(text)) if w.strip() and w not in PUNCTUATION]


def file_signature(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime": stat.st_mtime}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class DocumentIndex:
    """Chunks, their BM25 words (and vectors), and the files they came from."""

    def __init__(self, chunk_chars: int = 300, overlap: int = 60, embedding_model: str = ""):
        self.chunk_chars, self.overlap, self.embedding_model = chunk_chars, overlap, embedding_model
        self.files: dict[str, dict] = {}  # path -> {size, mtime, sha256, chunks: [ids]}
        self.chunks: list[Chunk] = []
        self.terms: list[list[str]] = []
        self.vectors = None  # numpy [chunks, dim] when an embedding model is used
        self.bm25 = None
        self._encoder = None

    # ---- building -------------------------------------------------------------------------------------------

    def update(self, paths, progress: bool = True) -> dict:
        """Index PATHS (files or folders): new and changed files are read, unchanged ones kept, vanished ones dropped.

        Returns a summary: added, changed, unchanged, dropped, failed (file -> error), warnings, pages, seconds.
        A file that cannot be read is reported and skipped; the rest of the batch is still indexed.
        """
        from tqdm.auto import tqdm

        began = time.perf_counter()
        summary = {"added": [], "changed": [], "unchanged": [], "dropped": [], "failed": {}, "warnings": [],
                   "pages": 0}
        for gone in [f for f in self.files if not Path(f).is_file()]:
            self._drop(gone)
            summary["dropped"].append(gone)
        todo = []
        for path in find_documents(paths):
            key = str(path)
            known = self.files.get(key)
            if known and path.is_file() and file_signature(path) == {k: known[k] for k in ("size", "mtime")}:
                summary["unchanged"].append(key)
                continue
            if known and path.is_file() and sha256(path) == known["sha256"]:
                known.update(file_signature(path))  # touched, not changed
                summary["unchanged"].append(key)
                continue
            todo.append((path, known is not None))
        fresh = []  # the chunks read now: they are the last ones in self.chunks
        for path, changed in tqdm(todo, desc="Reading documents", unit="file", disable=not progress or len(todo) < 2):
            key = str(path)
            try:
                pages, warnings = read_document(path)
            except DocumentError as err:
                summary["failed"][key] = str(err)
                logger.warning("%s", err)
                continue
            summary["warnings"] += warnings
            for warning in warnings:
                logger.warning("%s", warning)
            if changed:
                self._drop(key)
            ids = []
            for page in pages:
                summary["pages"] += 1
                for text, start, end in chunk_text(page.text, self.chunk_chars, self.overlap):
                    chunk = Chunk(len(self.chunks), key, page.page, start, end, text)
                    self.chunks.append(chunk)
                    self.terms.append(words(text))
                    fresh.append(chunk)
                    ids.append(chunk.id)
            self.files[key] = {**file_signature(path), "sha256": sha256(path), "chunks": ids}
            summary["changed" if changed else "added"].append(key)
        if self.embedding_model and fresh:
            self._embed_new(fresh)
        self._renumber()
        self._build_bm25()
        summary["chunks"] = len(self.chunks)
        summary["seconds"] = round(time.perf_counter() - began, 3)
        return summary

    def _drop(self, key: str) -> None:
        gone = set(self.files.pop(key, {}).get("chunks", []))
        keep = [k for k, c in enumerate(self.chunks) if c.id not in gone]
        self.chunks = [self.chunks[k] for k in keep]
        self.terms = [self.terms[k] for k in keep]
        if self.vectors is not None:
            self.vectors = self.vectors[keep]

    def _renumber(self) -> None:
        """Chunk ids are positions: after drops, renumber and point the files at their chunks again."""
        for info in self.files.values():
            info["chunks"] = []
        for k, chunk in enumerate(self.chunks):
            chunk.id = k
            self.files[chunk.file]["chunks"].append(k)

    def _build_bm25(self) -> None:
        import bm25s

        self.bm25 = None
        if self.chunks:
            self.bm25 = bm25s.BM25()
            self.bm25.index([terms or ["∅"] for terms in self.terms], show_progress=False)

    def _encoder_model(self):
        if self._encoder is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as err:
                raise RetrievalIndexError("--embedding_model needs sentence-transformers: pip install sentence-transformers") \
                    from err
            if not Path(self.embedding_model).is_dir():
                raise RetrievalIndexError(f"--embedding_model {self.embedding_model}: no such folder (give a local model "
                                  f"folder such as bge-small-zh; model hubs are not reached from here)")
            self._encoder = SentenceTransformer(self.embedding_model, device="cpu")
        return self._encoder

    def _embed(self, texts: list[str]):
        return self._encoder_model().encode(texts, normalize_embeddings=True, convert_to_numpy=True,
                                            show_progress_bar=len(texts) > 64)

    def _embed_new(self, fresh: list[Chunk]) -> None:
        import numpy as np

        vectors = self._embed([chunk.text for chunk in fresh])
        old = self.vectors if self.vectors is not None else np.zeros((0, vectors.shape[1]), dtype=vectors.dtype)
        if len(old) != len(self.chunks) - len(fresh):  # built without vectors before: embed everything
            self.vectors = self._embed([chunk.text for chunk in self.chunks])
            return
        self.vectors = np.concatenate([old, vectors])

    # ---- searching ------------------------------------------------------------------------------------------

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """The best TOP_K chunks for QUERY: {rank, score, id, file, page, start, end, text}."""
        if not self.chunks:
            return []
        k = min(top_k, len(self.chunks))
        ranked = self._bm25_ranking(query, max(k, 50) if self.vectors is not None else k)
        if self.vectors is not None:
            dense = self._dense_ranking(query, max(k, 50))
            fused: dict[int, float] = {}
            for ranking in (ranked, dense):
                for rank, (chunk_id, _) in enumerate(ranking):
                    fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank + 1)
            ranked = sorted(fused.items(), key=lambda item: -item[1])
        return [{"rank": rank + 1, "score": round(float(score), 4), **asdict(self.chunks[chunk_id])}
                for rank, (chunk_id, score) in enumerate(ranked[:k])]

    def _bm25_ranking(self, query: str, k: int) -> list[tuple[int, float]]:
        terms = [t for t in words(query) if t in self.bm25.vocab_dict] if self.bm25 is not None else []
        if not terms:
            return []
        ids, scores = self.bm25.retrieve([terms], k=k, show_progress=False)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]

    def _dense_ranking(self, query: str, k: int) -> list[tuple[int, float]]:
        scores = self.vectors @ self._embed([normalize(query)])[0]
        order = scores.argsort()[::-1][:k]
        return [(int(i), float(scores[i])) for i in order]

    # ---- saving and loading ---------------------------------------------------------------------------------

    def save(self, folder) -> Path:
        """Write a complete new version, then point CURRENT at it; older versions are removed afterwards."""
        import numpy as np

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        versions = [int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit()]
        version = folder / f"v{max(versions, default=0) + 1}"
        partial = folder / f".{version.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        settings = {"format": FORMAT, "chunk_chars": self.chunk_chars, "overlap": self.overlap,
                    "embedding_model": self.embedding_model, "chunks": len(self.chunks)}
        atomic_write_json(partial / "settings.json", settings)
        atomic_write_json(partial / "files.json", self.files)
        atomic_write_text(partial / "chunks.jsonl", "".join(
            json.dumps({**asdict(c), "terms": t}, ensure_ascii=False) + "\n" for c, t in zip(self.chunks, self.terms)))
        if self.vectors is not None:
            np.save(partial / "vectors.npy", self.vectors)
        if self.bm25 is not None:
            self.bm25.save(str(partial / "bm25"))
        os.replace(partial, version)
        atomic_write_text(folder / "CURRENT", version.name + "\n")
        for old in folder.glob("v*"):
            if old != version and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return version

    @classmethod
    def load(cls, folder, embedding_model: str | None = None) -> "DocumentIndex":
        import bm25s
        import numpy as np

        folder = Path(folder)
        pointer = folder / "CURRENT"
        if not pointer.is_file():
            raise RetrievalIndexError(f"{folder}: no index here (build one: python -m utils.retrieval index DOCS... "
                              f"--index_dir {folder})")
        version = folder / pointer.read_text(encoding="utf-8").strip()
        try:
            settings = json.loads((version / "settings.json").read_text(encoding="utf-8"))
            index = cls(settings["chunk_chars"], settings["overlap"],
                        embedding_model if embedding_model is not None else settings["embedding_model"])
            index.files = json.loads((version / "files.json").read_text(encoding="utf-8"))
            for line in (version / "chunks.jsonl").read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                index.terms.append(row.pop("terms"))
                index.chunks.append(Chunk(**row))
            if (version / "vectors.npy").is_file() and index.embedding_model:
                index.vectors = np.load(version / "vectors.npy")
            if (version / "bm25").is_dir():
                index.bm25 = bm25s.BM25.load(str(version / "bm25"))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise RetrievalIndexError(f"{version}: the index is damaged ({type(err).__name__}: {err}); build it again") \
                from None
        if settings.get("format") != FORMAT or len(index.chunks) != settings.get("chunks"):
            raise RetrievalIndexError(f"{version}: the index was written by another version or is incomplete; build it again")
        return index


def open_or_create(folder, chunk_chars: int | None = None, overlap: int | None = None,
                   embedding_model: str = "") -> DocumentIndex:
    """The index in FOLDER, or a new one. Chunk settings left out (None) keep the index's own; given ones that
    differ from the saved index's start it afresh (chunks of another size cannot be mixed)."""
    if (Path(folder) / "CURRENT").is_file():
        index = DocumentIndex.load(folder, embedding_model or None)
        if chunk_chars is None and overlap is None:
            return index
        if (index.chunk_chars, index.overlap) == (chunk_chars or index.chunk_chars, index.overlap if overlap is None
                                                   else overlap):
            return index
        logger.warning("%s was built with chunks of %d/%d characters; rebuilding it with %d/%d", folder,
                       index.chunk_chars, index.overlap, chunk_chars, overlap)
    return DocumentIndex(chunk_chars or 300, 60 if overlap is None else overlap, embedding_model)
