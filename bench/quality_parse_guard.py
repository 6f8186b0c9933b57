"""Replay post-processing's parse guard on a stored quality run's answers, offline.

Run: ``python bench/quality_parse_guard.py [RESULTS.json]`` (default: the committed
``bench/quality-baseline.json``). No model: it takes the ``onbox`` answers the benchmark
stored, applies :func:`onbox.inference.postprocess.parse_guard` to each (the guard the
pipeline runs as its last step) and scores both. Useful when changing the guard: a run
taken before the change shows what the change does to the same answers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> int:
    """Score the stored answers with and without the guard."""
    import bench_quality

    from onbox.inference.fim_metrics import Sample, score, summarise
    from onbox.inference.fim_tasks import sample_tasks
    from onbox.inference.postprocess import parse_guard

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
        guarded = parse_guard(task.prefix, answer, task.suffix, task.language)
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
