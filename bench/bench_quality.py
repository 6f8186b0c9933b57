"""Completion quality on a fixed task set: Onbox's pipeline vs what a naive integration does.

Run: ``python bench/bench_quality.py [--tasks N] [--write-baseline]``.

The tasks are fill-in-the-middle spans (line start, mid-line, block; see
:mod:`onbox.inference.fim_tasks`) cut with a fixed seed from source every machine has:
a fixed list of the running interpreter's standard-library modules and a few of this
repository's own files. Three answers per task, same model (the embedded default), same
generation limit, greedy decoding:

``onbox``    the editor's pipeline (``onbox eval``'s run: classification, routing, the
             worker, Onbox's prompt, stop at the block's end, post-processing, journal)
``fim-raw``  Onbox's prompt for the model (FIM when the model has FIM tokens, else its
             windowed prefix prompt) through the same worker, no post-processing and no
             block-end stop: the raw continuation
``plain``    plain llama-cpp-python ``create_completion`` of the prefix (the last
             prefix+suffix budget of tokens), raw: what a naive integration inserts

The model never loads in this process: ``onbox`` and ``fim-raw`` use the model worker,
``plain`` runs in a child. Prints the table and the issue's targets (met or not, by how
much), writes ``bench/results/quality.json`` (the previous run's file is kept as
``quality-previous.json``) and compares with both that and the committed
``bench/quality-baseline.json``; ``--write-baseline`` replaces the baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BASELINE = HERE / "quality-baseline.json"
SEED = 17

#: Standard-library modules present in every CPython 3.11+ (the text varies a little by
#: version; the task-set fingerprint in the JSON says whether two runs are comparable).
STDLIB = (
    "bisect.py",
    "colorsys.py",
    "copy.py",
    "csv.py",
    "fnmatch.py",
    "fractions.py",
    "heapq.py",
    "shlex.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
    "json/encoder.py",
    "html/parser.py",
    "ipaddress.py",
)
#: This repository's own code (Python) that changes rarely.
OWN = ("examples/billing.py", "audit/canonical.py", "classification/labels.py")

#: The naive integration, in a child: the model loaded with llama-cpp-python, the prefix's
#: last ``budget`` tokens completed greedily, the raw text kept.
PLAIN = """
import json, sys, time
import llama_cpp
from onbox.inference.local import default_threads, gpu_offload_supported, model_params_override
from onbox.inference.worker_profiles import amx_flags, cpu_flags
model, budget, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
prefixes = json.loads(sys.stdin.read())
# llama.cpp's AMX weight repacking crashes this model on AMX CPUs; load it the way the
# worker does there (a naive integration would not get this far at all).
with model_params_override(use_extra_bufts=not amx_flags(cpu_flags())):
    llm = llama_cpp.Llama(model_path=model, n_ctx=4096, n_threads=default_threads(),
                          n_gpu_layers=-1 if gpu_offload_supported() else 0, verbose=False)
out = []
for prefix in prefixes:
    t = time.perf_counter()
    tokens = llm.tokenize(prefix.encode("utf-8"), add_bos=False, special=False)[-budget:]
    prompt = ([llm.token_bos()] if llm.token_bos() >= 0 else []) + tokens
    r = llm.create_completion(prompt, max_tokens=max_tokens, temperature=0.0)
    out.append({"text": r["choices"][0]["text"], "latency": time.perf_counter() - t,
                "tokensIn": r["usage"]["prompt_tokens"],
                "tokensOut": r["usage"]["completion_tokens"]})
print(json.dumps(out))
"""

METRICS = (
    ("exactMatch", "exact match", "pct"),
    ("editSimilarity", "edit similarity", "ratio"),
    ("acceptedChars", "accepted chars", "num"),
    ("parsesAfter", "parses after", "pct"),
    ("brokeParse", "broke parse", "pct"),
    ("emptyRate", "empty", "pct"),
    ("latencyP50", "latency p50 s", "num"),
)
VARIANTS = ("onbox", "fim-raw", "plain")


def task_files() -> list[Path]:
    """The fixed files the task set is cut from (those this interpreter has)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [stdlib / name for name in STDLIB] + [ROOT / name for name in OWN]
    return [f for f in files if f.is_file()]


def fmt(value: Any, kind: str) -> str:
    """A figure as the table shows it."""
    if value is None:
        return "—"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "ratio":
        return f"{value:.3f}"
    return f"{value:.2f}"


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b`` (``inf`` when only ``b`` is zero, ``None`` when unknown)."""
    if a is None or b is None:
        return None
    if b == 0:
        return float("inf") if a > 0 else None
    return a / b


def targets(summary: dict[str, dict[str, Any]], overhead: float | None) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value, whether met, and the margin."""
    em = ratio(summary["onbox"]["exactMatch"], summary["plain"]["exactMatch"])
    es = ratio(summary["onbox"]["editSimilarity"], summary["fim-raw"]["editSimilarity"])
    broke = summary["onbox"]["brokeParse"]
    rows = [
        ("onbox vs plain prefix completion, exact match (×)", em, 1.5, "min"),
        ("onbox vs FIM prompt without post-processing, edit similarity (×)", es, 1.1, "min"),
        ("onbox suggestions that break parsing where the original parsed", broke, 0.05, "max"),
        ("onbox eval overhead over the completions themselves", overhead, 0.05, "max"),
    ]
    out = []
    for name, value, target, sense in rows:
        met = None if value is None else (value >= target if sense == "min" else value <= target)
        margin = None if value is None or value == float("inf") else value - target
        out.append(
            {
                "measure": name,
                "value": value,
                "target": target,
                "sense": sense,
                "met": met,
                "margin": margin,
            }
        )
    return out


def run_plain(
    model: Path, prefixes: list[str], budget: int, max_tokens: int
) -> list[dict[str, Any]]:
    """The naive integration's answers, from a child process."""
    child = subprocess.run(
        [sys.executable, "-c", PLAIN, str(model), str(budget), str(max_tokens)],
        input=json.dumps(prefixes),
        capture_output=True,
        text=True,
        check=True,
    )
    result: list[dict[str, Any]] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Build the task set, answer it three ways, print and store the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=60, help="task count (default 60)")
    parser.add_argument("--write-baseline", action="store_true", help=f"write {BASELINE.name}")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="ob-quality-"))
    runtime = tempfile.mkdtemp(prefix="ob-q-", dir="/tmp")  # short: AF_UNIX path limit
    os.environ["ONBOX_RUNTIME_DIR"] = runtime
    os.environ["ONBOX_DATA_DIR"] = str(scratch / "data")
    os.environ["ONBOX_CONFIG_DIR"] = str(scratch / "config")
    os.environ["ONBOX_TRUST_ROOT"] = str(scratch / "no-trust-root.json")

    from onbox.inference.destination import CancelToken, CompletionRequest
    from onbox.inference.errors import ModelError
    from onbox.inference.fim_metrics import Sample, score, summarise
    from onbox.inference.fim_tasks import FimTask, sample_tasks
    from onbox.inference.model import default_model_path
    from onbox.server.evaluation import SCORED, Evaluation
    from onbox.server.pipeline import PREFIX_CHARS, SUFFIX_CHARS
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    model = default_model_path()
    # The worker's crash memory (model-profiles.json) lives in the cache dir: keep this
    # run's in its own, so a machine too loaded to answer in time marks nothing
    # unavailable for anyone else. The verified model hashes come along.
    shared_hashes = Path(os.environ.get("ONBOX_CACHE_DIR", "")) / "model-hashes.json"
    os.environ["ONBOX_CACHE_DIR"] = str(scratch / "cache")
    (scratch / "cache").mkdir()
    if shared_hashes.is_file():
        shutil.copy(shared_hashes, scratch / "cache" / "model-hashes.json")
    settings = Settings()
    settings.model.path = str(model)
    # a benchmark on a busy machine is slow, not hung
    settings.model.deadline_seconds = 600.0
    c = settings.completion
    tasks = sample_tasks(task_files(), seed=SEED, limit=args.tasks)
    fingerprint = hashlib.sha256(
        "\n".join(f"{t.id}:{hashlib.sha256(t.text.encode()).hexdigest()}" for t in tasks).encode()
    ).hexdigest()[:16]
    print(f"{len(tasks)} tasks from {len(task_files())} files (fingerprint {fingerprint})")

    def window(t: FimTask) -> tuple[str, str]:
        doc = t.document
        return doc[max(0, t.offset - PREFIX_CHARS) : t.offset], doc[
            t.offset : t.offset + SUFFIX_CHARS
        ]

    answers: dict[str, list[Sample]] = {v: [] for v in VARIANTS}
    items: dict[str, dict[str, Any]] = {}  # per task: each variant's answer and score
    kinds: dict[str, dict[str, list[Sample]]] = {v: {} for v in VARIANTS}

    def keep(variant: str, t: FimTask, text: str, latency: float, t_in: int, t_out: int) -> None:
        sample = Sample(
            score(text, t.expected, t.prefix, t.suffix, t.language), latency, t_in, t_out
        )
        answers[variant].append(sample)
        kinds[variant].setdefault(t.kind, []).append(sample)
        items.setdefault(t.id, {**t.to_json(), "expected": t.expected})[variant] = {
            "answer": text,
            "exact": sample.score.exact,
            "editSimilarity": round(sample.score.similarity, 4),
            "brokeParse": sample.score.broke,
        }

    started = time.perf_counter()
    plain = run_plain(
        model, [window(t)[0] for t in tasks], c.prefix_tokens + c.suffix_tokens, c.max_tokens
    )
    for t, p in zip(tasks, plain, strict=True):
        keep("plain", t, p["text"], p["latency"], p["tokensIn"], p["tokensOut"])
    print(f"plain: {time.perf_counter() - started:.0f} s")

    wiring = Wiring(settings)
    try:
        evaluation = Evaluation(wiring, [wiring.router.on_box_name])
        wiring.local.load()
        started = time.perf_counter()
        report = evaluation.run(tasks, seed=SEED)
        for o in report.outcomes:
            if o.status == SCORED and o.score is not None:
                keep("onbox", o.task, o.answer, o.latency, o.tokens_in, o.tokens_out)
            else:
                print(f"onbox: task {o.task.id} {o.status}: {o.why}")
        print(f"onbox: {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        for t in tasks:
            prefix, suffix = window(t)
            request = CompletionRequest(
                prefix=prefix,
                suffix=suffix,
                language=t.language,
                path=str(t.path),
                max_tokens=c.max_tokens,
                temperature=c.temperature,
                stop_at_block_end=False,
            )
            t0 = time.perf_counter()
            try:
                done = wiring.local.complete(request, CancelToken())
            except ModelError as exc:
                print(f"fim-raw: task {t.id} error: {exc}")
                continue
            keep("fim-raw", t, done.text, time.perf_counter() - t0, done.tokens_in, done.tokens_out)
        print(f"fim-raw: {time.perf_counter() - started:.0f} s")
        model_info = wiring.local.describe()
        wiring.local.stop_worker()
    finally:
        wiring.stop()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)

    summary = {v: summarise(answers[v]) for v in VARIANTS}
    per_kind = {v: {k: summarise(s) for k, s in sorted(kinds[v].items())} for v in VARIANTS}
    goals = targets(summary, report.overhead)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "model": model_info.get("model"),
        "modelSha256": model_info.get("modelSha256"),
        "fim": model_info.get("fim"),
        "seed": SEED,
        "taskSet": {
            "count": len(tasks),
            "fingerprint": fingerprint,
            "kinds": {
                k: sum(t.kind == k for t in tasks) for k in ("line-start", "mid-line", "block")
            },
        },
        "maxTokens": c.max_tokens,
        "variants": summary,
        "byKind": per_kind,
        "evalOverhead": report.overhead,
        "targets": goals,
        # the stdlib and this repository are public code: answers are kept for review
        "items": list(items.values()),
    }
    print_table(result)
    RESULTS.mkdir(exist_ok=True)
    latest = RESULTS / "quality.json"
    previous = None
    if latest.is_file():
        previous = json.loads(latest.read_text())
        shutil.copy(latest, RESULTS / "quality-previous.json")
    latest.write_text(json.dumps(result, indent=2))
    if previous is not None:
        compare(result, previous, "the previous run")
    if BASELINE.is_file():
        compare(
            result, json.loads(BASELINE.read_text()), f"the committed baseline ({BASELINE.name})"
        )
    if args.write_baseline:
        BASELINE.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {BASELINE}")
    return 0


def print_table(result: dict[str, Any]) -> None:
    """The per-variant table (with the per-kind breakdown) and the targets."""
    width = 18
    print(
        f"\nmodel {result['model']} (FIM: {result['fim'] or 'none'}), "
        f"{result['taskSet']['count']} tasks, max {result['maxTokens']} tokens"
    )
    print(f"{'measure':<{width}}" + "".join(f"{v:>12}" for v in VARIANTS))
    for key, name, kind in METRICS:
        print(
            f"{name:<{width}}"
            + "".join(f"{fmt(result['variants'][v][key], kind):>12}" for v in VARIANTS)
        )
    print("\nexact match / edit similarity by task kind")
    for k in result["taskSet"]["kinds"]:
        cells = []
        for v in VARIANTS:
            s = result["byKind"][v].get(k)
            cells.append(
                "—"
                if s is None
                else f"{fmt(s['exactMatch'], 'pct')}/{fmt(s['editSimilarity'], 'ratio')}"
            )
        print(f"{k:<{width}}" + "".join(f"{c:>16}" for c in cells))
    print("\ntargets")
    for g in result["targets"]:
        value = g["value"]
        shown = "—" if value is None else ("∞" if value == float("inf") else f"{value:.3f}")
        verdict = "n/a" if g["met"] is None else ("met" if g["met"] else "MISSED")
        sign = "≥" if g["sense"] == "min" else "≤"
        margin = "" if g["margin"] is None else f" (by {g['margin']:+.3f})"
        print(f"  {g['measure']}: {shown} (target {sign} {g['target']}) {verdict}{margin}")


def compare(result: dict[str, Any], other: dict[str, Any], name: str) -> None:
    """Deltas against ``other``; says so when the task sets differ."""
    same = other.get("taskSet", {}).get("fingerprint") == result["taskSet"]["fingerprint"]
    note = "" if same else " — different task set (interpreter or files changed); compare with care"
    print(f"\nagainst {name} from {other.get('when', '?')}{note}")
    for key, label, kind in METRICS[:-1]:
        cells = []
        for v in VARIANTS:
            now, then = (
                result["variants"][v].get(key),
                other.get("variants", {}).get(v, {}).get(key),
            )
            if now is None or then is None:
                cells.append("—")
                continue
            delta = now - then
            cells.append(f"{delta * 100:+.1f}pt" if kind == "pct" else f"{delta:+.3f}")
        print(f"  {label:<16}" + "".join(f"{c:>12}" for c in cells))


if __name__ == "__main__":
    sys.exit(main())
