"""Chunking of Markdown and plain-text documents."""

from pathlib import Path

from voicecalm.knowledge.index import MAX_CHARS, chunk_document, clean_inline, read_documents

DOC = """# Card security

## If your card is lost

1. Block the card **straight away** in the [app](https://example.com).
2. Order a replacement.

You are not liable for payments made after you reported it.

## Fees

| Service | Fee |
|---|---|
| Replacement card | free |
| Express delivery | $15 |

## Branches

| Branch | Address | ATM |
|---|---|---|
| Riverside | 27 River Road | yes |
"""


def test_sections_keep_their_heading_path_and_lines():
    chunks = chunk_document(DOC, "card.md")
    assert [c.heading for c in chunks] == [
        "Card security > If your card is lost",
        "Card security > Fees",
        "Card security > Branches",
    ]
    assert all(c.source == "card.md" for c in chunks)
    assert chunks[0].text.splitlines() == [
        "Block the card straight away in the app.",
        "Order a replacement.",
        "You are not liable for payments made after you reported it.",
    ]
    assert chunks[0].embedding_text.startswith("Card security > If your card is lost\nBlock the card")


def test_table_rows_become_lines():
    chunks = chunk_document(DOC, "card.md")
    assert chunks[1].text.splitlines() == ["Replacement card: free", "Express delivery: $15"]
    assert chunks[2].text == "Riverside: Address: 27 River Road; ATM: yes"


def test_embedding_texts_index_each_line_of_a_multi_line_chunk():
    chunk = chunk_document(DOC, "card.md")[1]
    assert chunk.embedding_texts() == [
        "Card security > Fees\nReplacement card: free\nExpress delivery: $15",
        "Card security > Fees\nReplacement card: free",
        "Card security > Fees\nExpress delivery: $15",
    ]
    single = chunk_document(DOC, "card.md")[2]
    assert single.embedding_texts() == [single.embedding_text]


def test_long_sections_are_cut_at_sentences_within_the_size_limit():
    sentence = "Interest is calculated daily and paid on the first business day of each month. "
    text = "# Savings\n\n" + sentence * 30 + "\n\n" + "\n".join(f"- Item number {i} of a long list." for i in range(40))
    chunks = chunk_document(text, "savings.md")
    assert len(chunks) > 4
    assert all(len(c.text) <= MAX_CHARS for c in chunks)
    assert all(c.heading == "Savings" for c in chunks)
    # no sentence is cut in the middle
    assert all(c.text.rstrip().endswith(".") for c in chunks)
    joined = " ".join(c.text.replace("\n", " ") for c in chunks)
    assert joined.count("Interest is calculated daily") == 30


def test_plain_text_is_headed_by_the_file_name():
    chunks = chunk_document("First paragraph.\n\nSecond paragraph.\n", "opening_hours.txt")
    assert [c.heading for c in chunks] == ["Opening hours"]
    assert chunks[0].text == "First paragraph.\nSecond paragraph."


def test_clean_inline():
    assert clean_inline("**$25** per *item*, see `code` and [the app](http://x)") == "$25 per item, see code and the app"


def test_read_documents_takes_markdown_and_text_sorted(tmp_path: Path):
    (tmp_path / "b.md").write_text("# B\n\nbee")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("ay")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    assert read_documents(tmp_path) == [("b.md", "# B\n\nbee"), ("sub/a.txt", "ay")]
    assert read_documents(tmp_path / "missing") == []
