"""Answer questions from a project's documents.

`index.KnowledgeIndex` chunks the project's `docs/` folder, embeds the chunks and keeps them in a
FAISS index cached under `<project>/.voicecalm/knowledge/`; `answer` turns the passages a search
finds into a short spoken answer, or says that the documents hold no relevant answer.
"""

from voicecalm.knowledge.answer import DEFAULT_THRESHOLD, Answer, Answerer, ExtractiveAnswerer
from voicecalm.knowledge.index import Chunk, KnowledgeIndex, Passage, chunk_document

__all__ = [
    "DEFAULT_THRESHOLD",
    "Answer",
    "Answerer",
    "Chunk",
    "ExtractiveAnswerer",
    "KnowledgeIndex",
    "Passage",
    "chunk_document",
]
