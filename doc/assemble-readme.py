#!/usr/bin/env python3
"""Rebuilds the tail of README.md (from "## Dispatching" on) from the section sources in doc/.

README.md is the user's manual; the long sections are kept in doc/ so they can be edited
one at a time.  Run after editing doc/*.md:  python3 doc/assemble-readme.py
"""
import pathlib
import re

root = pathlib.Path(__file__).resolve().parent.parent
readme = root / "README.md"
text = readme.read_text()
head = text[: text.index("\n## Dispatching")]
parts = []
for name, title in [("dispatching", "Dispatching"), ("replication", "Replication and failover"),
                    ("webhooks", "Webhooks"), ("campaigns", "Campaigns"),
                    ("compliance", "Compliance"), ("monitoring", "Monitoring"),
                    ("admin", "Admin API and dashboard"), ("demo", "Demo"),
                    ("performance", "Performance")]:
    body = (root / "doc" / f"{name}.md").read_text().strip()
    body = re.sub(r"\A## [^\n]*", f"## {title}", body)
    parts.append(body)
readme.write_text(head.rstrip() + "\n\n" + "\n\n".join(parts) + "\n")
