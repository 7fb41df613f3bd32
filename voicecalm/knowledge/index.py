"""The document index: chunk `docs/`, embed the chunks, search them with FAISS.

Chunks follow the documents' structure: a Markdown heading starts a new section, and a section is
cut into chunks of at most `MAX_CHARS` at paragraph, list-item and table-row boundaries (a long
paragraph at sentence boundaries). Each chunk keeps its heading path ("Card security > Replacement
cards"), which is embedded with the text: a list item alone often does not say what it is about.
Table rows become "first cell: other cells" lines.

Each chunk is indexed as a whole and, when it has several lines, line by line as well (each line
with the chunk's heading): a chunk's score is its best vector's score. A table row or list item
that answers the question is then not drowned by the chunk's other lines ("what does it cost to
stop a cheque" finds the "Stop payment on a check: $30" row of an eleven-row fee table).

The index is cached in `<project>/.voicecalm/knowledge/` under a fingerprint of the documents'
contents, the chunking settings and the embedder's name; `KnowledgeIndex.load_or_build` reuses it
while all three are unchanged and rebuilds it otherwise.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from voicecalm.models.embedder import Embedder, LocalEmbedder

logger = logging.getLogger(__name__)

DOC_SUFFIXES = (".md", ".markdown", ".txt")
CACHE_DIR = Path(".voicecalm") / "knowledge"
INDEX_FILE = "index.faiss"
MANIFEST_FILE = "chunks.json"
FORMAT_VERSION = 2
MIN_CHARS = 300
MAX_CHARS = 600
EMBED_BATCH = 16
# Exact search up to here; above it an HNSW graph (approximate, sub-linear).
FLAT_LIMIT = 20_000

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    source: str  # file path relative to the docs folder, e.g. "fees.md"
    heading: str  # heading path, e.g. "Account fees at VoiceCalm Bank > Transfer limits"

    @property
    def embedding_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    def embedding_texts(self) -> list[str]:
        """The texts indexed for this chunk: the whole chunk, then each line if there are several."""
        lines = [line for line in self.text.splitlines() if line.strip()]
        texts = [self.embedding_text]
        if len(lines) > 1:
            texts.extend(f"{self.heading}\n{line}" if self.heading else line for line in lines)
        return texts


@dataclass(frozen=True, slots=True)
class Passage:
    text: str
    source: str
    heading: str
    score: float  # cosine similarity to the query, -1..1


# --- chunking ---------------------------------------------------------------------------------

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def clean_inline(text: str) -> str:
    """Markdown emphasis, code and links to plain text; whitespace collapsed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if part.strip()]


def finished_sentences(text: str) -> tuple[list[str], str]:
    """The sentences of text still being written that are surely complete (another one has
    begun after them), and the rest exactly as written so far."""
    boundaries = list(_SENTENCE_END.finditer(text))
    if not boundaries:
        return [], text
    return split_sentences(text[: boundaries[-1].start()]), text[boundaries[-1].end() :]


def _table_rows(lines: list[str]) -> list[str]:
    rows = [[clean_inline(cell) for cell in line.strip().strip("|").split("|")] for line in lines if not _TABLE_SEPARATOR.match(line)]
    if len(rows) < 2:
        return [" ".join(cell for row in rows for cell in row)]
    header, body = rows[0], rows[1:]
    out = []
    for row in body:
        if len(row) == 2:
            out.append(f"{row[0]}: {row[1]}")
        else:
            rest = "; ".join(f"{name}: {value}" for name, value in zip(header[1:], row[1:]) if value)
            out.append(f"{row[0]}: {rest}")
    return out


def _units(lines: list[str]) -> list[str]:
    """A section's body as paragraphs, list items and table rows, in order."""
    units: list[str] = []
    current: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if current:
            units.append(clean_inline(" ".join(current)))
            current.clear()
        if table:
            units.extend(_table_rows(table))
            table.clear()

    for line in lines:
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("|"):
            if current:
                flush()
            table.append(stripped)
        elif _LIST_ITEM.match(line):
            flush()
            current.append(_LIST_ITEM.sub("", line, count=1))
        else:
            if table:
                flush()
            current.append(stripped)
    flush()
    return [unit for unit in units if unit]


def _pieces(unit: str, max_chars: int) -> list[str]:
    """A unit cut at sentence boundaries (then at words) into pieces of at most max_chars."""
    if len(unit) <= max_chars:
        return [unit]
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(unit):
        while len(sentence) > max_chars:  # one very long sentence: cut at a word
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = sentence
        else:
            current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


def chunk_document(text: str, source: str, *, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS) -> list[Chunk]:
    """Chunks of one document. Markdown headings start sections; plain text is one section headed
    by the file's name. A chunk never spans two sections; a section's units are packed greedily up
    to `max_chars`, and a short tail is merged into the chunk before it when the sum still fits."""
    is_markdown = not source.endswith(".txt")
    default_heading = Path(source).stem.replace("_", " ").replace("-", " ").strip().capitalize()
    sections: list[tuple[str, list[str]]] = []
    headings: list[tuple[int, str]] = []
    body: list[str] = []

    def close() -> None:
        path = " > ".join(title for _, title in headings) or default_heading
        sections.append((path, list(body)))
        body.clear()

    for line in text.splitlines():
        match = _HEADING.match(line) if is_markdown else None
        if match:
            close()
            level = len(match.group(1))
            headings[:] = [(lvl, title) for lvl, title in headings if lvl < level]
            headings.append((level, clean_inline(match.group(2))))
        else:
            body.append(line)
    close()

    chunks: list[Chunk] = []
    for heading, lines in sections:
        packed: list[str] = []
        for unit in _units(lines):
            for piece in _pieces(unit, max_chars):
                if packed and len(packed[-1]) + 1 + len(piece) <= max_chars:
                    packed[-1] = f"{packed[-1]}\n{piece}"
                else:
                    packed.append(piece)
        if len(packed) >= 2 and len(packed[-1]) < min_chars // 2 and len(packed[-2]) + 1 + len(packed[-1]) <= max_chars + min_chars // 2:
            packed[-2:] = [f"{packed[-2]}\n{packed[-1]}"]
        chunks.extend(Chunk(text=text, source=source, heading=heading) for text in packed)
    return chunks


def read_documents(docs: Path) -> list[tuple[str, str]]:
    """(path relative to `docs`, text) of every document, sorted by path."""
    if not docs.is_dir():
        return []
    files = sorted(p for p in docs.rglob("*") if p.is_file() and p.suffix.lower() in DOC_SUFFIXES)
    return [(p.relative_to(docs).as_posix(), p.read_text(encoding="utf-8", errors="replace")) for p in files]


def fingerprint(documents: Sequence[tuple[str, str]], embedder_name: str, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([FORMAT_VERSION, embedder_name, max_chars, min_chars]).encode())
    for source, text in documents:
        digest.update(b"\0" + source.encode() + b"\0" + hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()


# --- the index --------------------------------------------------------------------------------


def _faiss_index(vectors: np.ndarray):  # -> faiss.Index
    import faiss

    dimensions = vectors.shape[1]
    if len(vectors) <= FLAT_LIMIT:
        index = faiss.IndexFlatIP(dimensions)
    else:
        index = faiss.IndexHNSWFlat(dimensions, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class KnowledgeIndex:
    """Chunks of a project's documents in a FAISS inner-product index (rows are L2-normalised,
    so scores are cosine similarities). `owners[i]` is the chunk that vector i belongs to."""

    def __init__(
        self, chunks: Sequence[Chunk], owners: np.ndarray, index, embedder: Embedder, fingerprint: str, *, rebuilt: bool
    ) -> None:
        self.chunks = tuple(chunks)
        self.owners = np.asarray(owners, dtype=np.int64)
        self.index = index
        self.embedder = embedder
        self.fingerprint = fingerprint
        self.rebuilt = rebuilt  # False when it came from the on-disk cache

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(chunk.source for chunk in self.chunks))

    @classmethod
    async def load_or_build(
        cls,
        project_root: Path,
        embedder: Embedder | None = None,
        *,
        docs_dir: Path | None = None,
        cache_dir: Path | None = None,
        progress: Progress | None = None,
        max_chars: int = MAX_CHARS,
        min_chars: int = MIN_CHARS,
    ) -> KnowledgeIndex:
        """The index of `<project_root>/docs`, from the cache when it matches the documents and
        the embedder, else built (and cached). `progress(done, total)` follows the embedding, in
        texts (a chunk and each of its lines)."""
        embedder = embedder or LocalEmbedder.shared()
        root = Path(project_root)
        docs = docs_dir or root / "docs"
        cache = cache_dir or root / CACHE_DIR
        documents = read_documents(docs)
        key = fingerprint(documents, embedder.name, max_chars, min_chars)
        cached = cls._load_cache(cache, key, embedder)
        if cached is not None:
            logger.info("knowledge index of %s: %d chunks from the cache", docs, len(cached))
            return cached
        chunks = [chunk for source, text in documents for chunk in chunk_document(text, source, max_chars=max_chars, min_chars=min_chars)]
        texts: list[str] = []
        owners: list[int] = []
        for number, chunk in enumerate(chunks):
            for text in chunk.embedding_texts():
                texts.append(text)
                owners.append(number)
        vectors = await cls._embed(texts, embedder, progress)
        built = cls(chunks, np.asarray(owners, dtype=np.int64), _faiss_index(vectors), embedder, key, rebuilt=True)
        try:
            built._save(cache)
        except OSError as error:  # a read-only project still answers; it rebuilds next time
            logger.warning("cannot cache the knowledge index in %s: %s", cache, error)
        logger.info("knowledge index of %s: built %d chunks (%d vectors) from %d documents", docs, len(chunks), len(texts), len(documents))
        return built

    @staticmethod
    async def _embed(texts: Sequence[str], embedder: Embedder, progress: Progress | None) -> np.ndarray:
        if progress:
            progress(0, len(texts))
        parts = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            parts.append(await embedder.embed(batch))
            if progress:
                progress(start + len(batch), len(texts))
        if not parts:
            return np.zeros((0, getattr(embedder, "dimensions", 1)), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32)

    @classmethod
    def _load_cache(cls, cache: Path, key: str, embedder: Embedder) -> KnowledgeIndex | None:
        manifest_path = cache / MANIFEST_FILE
        if not manifest_path.is_file() or not (cache / INDEX_FILE).is_file():
            return None
        try:
            import faiss

            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if manifest.get("fingerprint") != key or manifest.get("format") != FORMAT_VERSION:
                return None
            chunks = [Chunk(**entry) for entry in manifest["chunks"]]
            owners = np.asarray(manifest["owners"], dtype=np.int64)
            index = faiss.read_index(str(cache / INDEX_FILE))
            if index.ntotal != len(owners) or (len(owners) and (owners.min() < 0 or owners.max() >= len(chunks))):
                return None
        except Exception as error:  # a damaged cache is rebuilt, never fatal
            logger.warning("ignoring the knowledge index cache in %s: %s", cache, error)
            return None
        return cls(chunks, owners, index, embedder, key, rebuilt=False)

    def _save(self, cache: Path) -> None:
        import faiss

        cache.mkdir(parents=True, exist_ok=True)
        (cache / ".gitignore").write_text("*\n", encoding="utf-8")
        index_tmp = cache / (INDEX_FILE + ".tmp")
        faiss.write_index(self.index, str(index_tmp))
        manifest = {
            "format": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "embedder": self.embedder.name,
            "dimensions": int(self.index.d),
            "chunks": [asdict(chunk) for chunk in self.chunks],
            "owners": self.owners.tolist(),
        }
        manifest_tmp = cache / (MANIFEST_FILE + ".tmp")
        manifest_tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
        # The manifest holds the fingerprint, so it goes last: a crash in between leaves a stale
        # manifest whose fingerprint or vector count does not match, and the cache is rebuilt.
        os.replace(index_tmp, cache / INDEX_FILE)
        os.replace(manifest_tmp, cache / MANIFEST_FILE)

    async def search(self, query: str, k: int = 3) -> list[Passage]:
        """The k chunks most similar to `query` (a chunk scores its best vector), best first."""
        if not self.chunks or not query.strip():
            return []
        vector = await self.embedder.embed([query])
        return self.search_vector(vector[0], k)

    def search_vector(self, vector: np.ndarray, k: int = 3) -> list[Passage]:
        if not self.chunks:
            return []
        # Enough vectors to find k distinct chunks in all but degenerate cases.
        wanted = min(self.index.ntotal, max(k * 8, 32))
        scores, ids = self.index.search(np.asarray(vector, dtype=np.float32).reshape(1, -1), wanted)
        best: dict[int, float] = {}
        for score, i in zip(scores[0], ids[0]):
            if i < 0:
                continue
            owner = int(self.owners[int(i)])
            if owner not in best:  # results come best first
                best[owner] = float(score)
                if len(best) == k:
                    break
        return [
            Passage(text=self.chunks[c].text, source=self.chunks[c].source, heading=self.chunks[c].heading, score=score)
            for c, score in best.items()
        ]
