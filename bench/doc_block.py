"""Generated text between a doc's markers, so prose never retypes a measured number."""

from __future__ import annotations

from pathlib import Path


def include_block(doc: Path, name: str, text: str) -> None:
    """Replace what lies between `<!-- NAME: begin ...` and `<!-- NAME: end -->` in DOC."""
    content = doc.read_text()
    begin = content.index(f"<!-- {name}: begin")
    begin = content.index("\n", begin) + 1
    end = content.index(f"<!-- {name}: end -->")
    doc.write_text(content[:begin] + text + content[end:])
