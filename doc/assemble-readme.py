#!/usr/bin/env python3
"""Rebuilds the tail of README.md (from "## Dispatching" on) from the section sources in doc/.

README.md is the user's manual; the long sections are kept in doc/ so they can be edited
one at a time.  Run after editing doc/*.md:  python3 doc/assemble-readme.py
Each copied section starts with an HTML comment naming its source.  With --check, nothing is
written: the exit status says whether README.md is what the sources make (the test suite runs
this: test/integration/readme_sources.test.js).
"""
import pathlib
import re
import sys

root = pathlib.Path(__file__).resolve().parent.parent
readme = root / "README.md"
text = readme.read_text()
head = text[: text.index("\n## Dispatching")]
head = re.sub(r"\n<!-- generated from doc/dispatching.md[^\n]*\s*\Z", "\n", head)
parts = []
for name, title in [("dispatching", "Dispatching"), ("replication", "Replication and failover"),
                    ("webhooks", "Webhooks"), ("campaigns", "Campaigns"),
                    ("compliance", "Compliance"), ("monitoring", "Monitoring"),
                    ("admin", "Admin API and dashboard"), ("demo", "Demo"),
                    ("performance", "Performance")]:
    body = (root / "doc" / f"{name}.md").read_text().strip()
    body = re.sub(r"\A## [^\n]*", f"## {title}", body)
    parts.append(f"<!-- generated from doc/{name}.md by doc/assemble-readme.py: edit that file, then run it -->\n"
                 + body)
new = head.rstrip() + "\n\n" + "\n\n".join(parts) + "\n"
if "--check" in sys.argv[1:]:
    if new != text:
        sys.exit("README.md differs from what doc/*.md make: run python3 doc/assemble-readme.py")
    sys.exit(0)
readme.write_text(new)
