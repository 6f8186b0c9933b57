"""The model worker: its cost over in-process llama-cpp-python, KV reuse, crash recovery, memory.

Run: ``python bench/bench_worker.py [--runs N]``. The model never loads in this process:
the direct measurement runs in a child, the worker in its own process. Prints a table and
writes JSON to ``bench/results/worker.json``. Ratios are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: The child that times the in-process engine on the same requests.
DIRECT = """
import json, sys, time
from onbox.inference.destination import CancelToken, CompletionRequest
from onbox.inference.local import LlamaCppDestination, ModelSettings
model, prompts = sys.argv[1], json.loads(sys.stdin.read())
dest = LlamaCppDestination(ModelSettings(path=model))
dest.load()
out = []
for prefix in prompts:
    req = CompletionRequest(prefix=prefix, suffix="", max_tokens=16, temperature=0.0,
                            stop_at_block_end=False)
    t = time.perf_counter(); dest.complete(req, CancelToken()); out.append(time.perf_counter() - t)
print(json.dumps(out))
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _code(lines: int) -> str:
    return "".join(f"def func_{i}(a, b):\n    return a * {i} + b\n\n" for i in range(lines // 3))


def main() -> int:
    """Run every measure and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    runtime = tempfile.mkdtemp(prefix="ob-bench-", dir="/tmp")
    cache = Path(tempfile.mkdtemp(prefix="ob-bench-cache-"))
    os.environ["ONBOX_RUNTIME_DIR"] = runtime
    from onbox.inference.destination import CancelToken, CompletionRequest
    from onbox.inference.local import ModelSettings
    from onbox.inference.model import default_model_path
    from onbox.inference.worker_client import WorkerCrashed, WorkerDestination

    model = default_model_path()
    shared_hashes = Path(os.environ.get("ONBOX_CACHE_DIR", "")) / "model-hashes.json"
    os.environ["ONBOX_CACHE_DIR"] = str(cache)
    if shared_hashes.is_file():
        shutil.copy(shared_hashes, cache / "model-hashes.json")
    body = _code(180)
    prompts = [f"# variant {i}\n{body}def tail(x):\n    " for i in range(args.runs)]

    # 1. identical prompts: direct in a child vs through the worker
    child = subprocess.run(
        [sys.executable, "-c", DIRECT, str(model)],
        input=json.dumps(prompts),
        capture_output=True,
        text=True,
        check=True,
    )
    direct = json.loads(child.stdout.strip().splitlines()[-1])
    dest = WorkerDestination(ModelSettings(path=str(model)))
    dest.load()
    through: list[float] = []
    for prefix in prompts:
        req = CompletionRequest(
            prefix=prefix, suffix="", max_tokens=16, temperature=0.0, stop_at_block_end=False
        )
        t = time.perf_counter()
        dest.complete(req, CancelToken())
        through.append(time.perf_counter() - t)
    ratio = statistics.median(through) / statistics.median(direct)

    # 2. KV reuse after typing on a ~1,500-token file
    typed = _code(420) + "def tail(x):\n    "
    cold_req = CompletionRequest(prefix=typed, suffix="", max_tokens=8, temperature=0.0)
    t = time.perf_counter()
    dest.complete(cold_req, CancelToken())
    cold_s, cold_eval = time.perf_counter() - t, dest.last_prompt_tokens_evaluated
    warm_req = CompletionRequest(prefix=typed + "total", suffix="", max_tokens=8, temperature=0.0)
    t = time.perf_counter()
    dest.complete(warm_req, CancelToken())
    warm_s, warm_eval = time.perf_counter() - t, dest.last_prompt_tokens_evaluated

    # 3. memory: the worker with the model, and a server-side client process
    worker_rss = _rss_mb(dest.worker_pid or 0)
    server = subprocess.run(
        [
            sys.executable,
            "-c",
            "import onbox.server.lsp, sys; from onbox.server.wiring import Wiring;"
            "from onbox.server.settings import Settings; s=Settings(); s.model.path=sys.argv[1];"
            "w=Wiring(s, open_journal=False); w.local.load();"
            "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])",
            str(model),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ONBOX_DATA_DIR": str(cache / "data")},
    )
    server_rss = int(server.stdout.strip().splitlines()[-1]) / 1024
    dest.stop_worker()

    # 4. crash -> next completion answered
    os.environ["ONBOX_WORKER_FAULT"] = "segv-on-decode@configured"
    crashy = WorkerDestination(ModelSettings(path=str(model)))
    crashy.load()
    small = CompletionRequest(prefix="def add(a, b):\n    ", suffix="", max_tokens=8)
    t = time.perf_counter()
    try:
        crashy.complete(small, CancelToken())
    except WorkerCrashed:
        pass
    crashed_at = time.perf_counter()
    crashy.complete(small, CancelToken())
    recovery = time.perf_counter() - crashed_at
    crashy.stop_worker()
    del os.environ["ONBOX_WORKER_FAULT"]
    shutil.rmtree(runtime, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)

    rows = [
        ("worker vs in-process, identical prompt (median ratio)", ratio, "≤ 1.05"),
        ("  in-process median (s)", statistics.median(direct), ""),
        ("  worker median (s)", statistics.median(through), ""),
        ("KV reuse: prompt tokens evaluated cold / warm", cold_eval / max(warm_eval, 1), "≥ 5"),
        ("KV reuse: end to end cold / warm", cold_s / warm_s, "≥ 2"),
        ("crash → next completion answered (s)", recovery, "≤ 5"),
        ("worker RSS with the default model (MB)", worker_rss, "≤ 500"),
        ("server-side process RSS, model loaded in the worker (MB)", server_rss, "≤ 120"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10.3f}  {target}")
    RESULTS.mkdir(exist_ok=True)
    result: dict[str, Any] = {
        "runs": args.runs,
        "direct_s": direct,
        "worker_s": through,
        "median_ratio": ratio,
        "kv": {"cold_s": cold_s, "warm_s": warm_s, "cold_eval": cold_eval, "warm_eval": warm_eval},
        "crash_recovery_s": recovery,
        "worker_rss_mb": worker_rss,
        "server_rss_mb": server_rss,
        "cpus": os.cpu_count(),
    }
    (RESULTS / "worker.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
