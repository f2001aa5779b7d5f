#!/usr/bin/env python3
"""Checks that no content of a former README was lost when it moved into README.md and docs/.

    scripts/docs-moved.py OLD_REV          # e.g. the commit before the README became a front door

Every paragraph, list item, table row and code line of `OLD_REV:README.md` must appear in the
current README.md or a docs/*.md file: word for word once markdown link targets and line
wrapping are set aside (links are re-pointed when text moves into docs/), or, for a block whose
cross-references were reworded, nearly so (at least 85 % of its words in order, reported as
"edited" for a reviewer to read). Headings are not checked: guides name their sections anew.
Exits 1 and lists each block found nowhere.
"""

import difflib
import pathlib
import re
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parent.parent
NEARLY = 0.85


def blocks(text):
    """The checkable blocks of a markdown text, normalised."""
    out, para, fenced = [], [], False

    def flush():
        if para:
            out.append(" ".join(para))
            para.clear()

    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            fenced = not fenced
            continue
        if fenced:
            if stripped:
                out.append(stripped)
            continue
        if not stripped or re.match(r"^#{1,6} ", stripped):
            flush()
        elif stripped.startswith("|"):
            flush()
            if not re.fullmatch(r"[|\s:-]+", stripped):
                out.append(stripped)
        elif re.match(r"^([-*]|\d+\.) ", stripped) and not line.startswith(" "):
            flush()
            para.append(stripped)
        else:
            para.append(stripped)
    flush()
    return [b for b in (normalise(b) for b in out) if b]


def normalise(text):
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets move with the text
    return re.sub(r"\s+", " ", text).strip()


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    old = subprocess.run(
        ["git", "show", f"{sys.argv[1]}:README.md"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    targets = [REPO / "README.md", *sorted((REPO / "docs").glob("**/*.md"))]
    new_blocks = [b for path in targets for b in blocks(path.read_text())]
    corpus = "\n".join(new_blocks)
    missing, edited = [], []
    for block in blocks(old):
        if block in corpus:
            continue
        words = block.split()
        best, best_ratio = None, 0.0
        for candidate in new_blocks:
            matcher = difflib.SequenceMatcher(None, words, candidate.split(), autojunk=False)
            if matcher.real_quick_ratio() < NEARLY or matcher.quick_ratio() < NEARLY:
                continue
            if (ratio := matcher.ratio()) > best_ratio:
                best, best_ratio = candidate, ratio
        if best_ratio >= NEARLY:
            edited.append((block, best))
        else:
            missing.append(block)
    for block, best in edited:
        print(f"edited:\n  was: {block}\n  now: {best}\n")
    for block in missing:
        print(f"MISSING: {block}\n")
    total = len(blocks(old))
    print(f"{total} blocks: {total - len(edited) - len(missing)} moved word for word, "
          f"{len(edited)} edited, {len(missing)} missing")
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
