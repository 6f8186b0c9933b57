"""What a parse guard in post-processing would do to the quality benchmark's answers.

Run: ``python bench/quality_parse_guard.py [RESULTS.json]`` (default: the committed
``bench/quality-baseline.json``). Offline, no model: it takes the ``onbox`` answers the
benchmark stored, cuts each back to its longest run of whole lines that adds no
tree-sitter error to the document (dropping it when none does), and scores both. It is
the evidence for the proposal in ``docs/eval.md``; the guard itself is not in
``onbox.inference.postprocess``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def errors(language: str, text: str) -> int:
    """Error and missing nodes in ``text``'s parse."""
    from onbox.classification.languages import normalise_language, parse

    name = normalise_language(language)
    if name is None:
        return 0
    stack = [parse(name, text.encode("utf-8", "surrogatepass")).root_node]
    found = 0
    while stack:
        node = stack.pop()
        found += bool(node.is_error or node.is_missing)
        if node.has_error:
            stack.extend(node.children)
    return found


def guard(answer: str, prefix: str, suffix: str, language: str) -> str:
    """``answer`` cut back to whole lines that add no parse error (``""`` if none)."""
    allowed = errors(language, prefix + suffix)
    lines = answer.split("\n")
    for keep in range(len(lines), 0, -1):
        candidate = "\n".join(lines[:keep]).rstrip()
        if errors(language, prefix + candidate + suffix) <= allowed:
            return candidate
    return ""


def main() -> int:
    """Score the stored answers with and without the guard."""
    import bench_quality

    from onbox.inference.fim_metrics import Sample, score, summarise
    from onbox.inference.fim_tasks import sample_tasks

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else bench_quality.BASELINE
    data: dict[str, Any] = json.loads(path.read_text())
    count = data["taskSet"]["count"]
    tasks = {
        t.id: t for t in sample_tasks(bench_quality.task_files(), seed=data["seed"], limit=count)
    }
    before, after, changed = [], [], 0
    for item in data["items"]:
        task = tasks.get(item["id"])
        if task is None or "onbox" not in item:
            print(f"task {item['id']} is not in this task set; skipped")
            continue
        answer = item["onbox"]["answer"]
        guarded = guard(answer, task.prefix, task.suffix, task.language)
        changed += guarded != answer
        for out, text in ((before, answer), (after, guarded)):
            out.append(
                Sample(score(text, task.expected, task.prefix, task.suffix, task.language), 0)
            )
    old, new = summarise(before), summarise(after)
    print(f"{path.name}: {len(before)} onbox answers, {changed} changed by the guard")
    for key in ("exactMatch", "editSimilarity", "parsesAfter", "brokeParse", "emptyRate"):
        print(f"  {key:<15} {old[key]:>8.3f} -> {new[key]:>8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
