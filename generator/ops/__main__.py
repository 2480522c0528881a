"""``python -m generator.ops``: render the operations table of docs/authoring.md again."""

from __future__ import annotations

import sys
from pathlib import Path

from generator.ops import with_docs_table

if __name__ == "__main__":
    doc = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/authoring.md")
    doc.write_text(with_docs_table(doc.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the operations table of {doc}")
