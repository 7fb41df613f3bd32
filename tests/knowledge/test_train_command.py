"""`voicecalm train`: builds the document index, then finds it up to date."""

from pathlib import Path

from typer.testing import CliRunner

from voicecalm.cli import app


def test_train_builds_then_reuses_the_index(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "hours.md").write_text("# Hours\n\nWe open at 9 am.\n\n## Weekend\n\nClosed on Sundays.\n")
    runner = CliRunner()
    first = runner.invoke(app, ["train", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert "document index built (2 chunks from 1 documents)" in " ".join(first.output.split())  # rich wraps
    assert (tmp_path / ".voicecalm" / "knowledge" / "index.faiss").is_file()
    second = runner.invoke(app, ["train", str(tmp_path)])
    assert second.exit_code == 0 and "up to date" in " ".join(second.output.split())  # rich wraps long paths


def test_train_without_docs_says_so(tmp_path: Path):
    result = CliRunner().invoke(app, ["train", str(tmp_path)])
    assert result.exit_code == 0 and "no docs/ folder" in result.output
