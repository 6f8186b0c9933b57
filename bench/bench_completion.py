"""Completion-path benchmark: server overhead, KV reuse, typing bursts, memory.

Runs the real ``onbox serve`` over stdio with the embedded default model and compares
it with a direct llama-cpp-python call in the same run, so the ratios hold on any machine.
Prints a table and writes ``bench/results/bench_completion.json``. It asserts nothing.

    python bench/bench_completion.py [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

FUNCTION = '''def fizzbuzz(n):
    """Return "Fizz" for multiples of 3, "Buzz" for multiples of 5, "FizzBuzz" for both."""
    '''


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MiB (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Session:
    """One ``onbox serve`` process and a pygls client talking to it."""

    def __init__(self, env: dict[str, str], options: dict[str, Any]) -> None:
        self.env = env
        self.options = options
        self.client = LanguageClient("onbox-bench", "1")
        self.statuses: list[Any] = []
        self.ready = asyncio.Event()
        self.version = 1

        @self.client.feature("onbox/status")
        def _status(ls: LanguageClient, params: Any) -> None:
            self.statuses.append(params)
            if getattr(params, "uri", None) is None and getattr(params, "state", "") in (
                "ready",
                "disabled",
            ):
                self.ready.set()

    async def start(self) -> None:
        await self.client.start_io(sys.executable, "-m", "onbox", "serve", env=self.env)
        await self.client.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options=self.options,
            )
        )
        self.client.initialized(types.InitializedParams())

    @property
    def pid(self) -> int:
        return int(self.client._server.pid)  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.client.shutdown_async(None)
        self.client.exit(None)
        await self.client.stop()

    def open(self, uri: str, text: str) -> None:
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )

    def close(self, uri: str) -> None:
        self.client.text_document_did_close(
            types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri))
        )

    def type_at(self, uri: str, line: int, char: int, text: str) -> None:
        self.version += 1
        pos = types.Position(line=line, character=char)
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.version),
                content_changes=[
                    types.TextDocumentContentChangePartial(
                        range=types.Range(start=pos, end=pos), text=text
                    )
                ],
            )
        )

    async def complete(self, uri: str, line: int, char: int) -> tuple[float, Any]:
        started = time.perf_counter()
        result = await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=char),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic
                ),
            )
        )
        return time.perf_counter() - started, result

    async def health(self) -> Any:
        return await self.client.protocol.send_request_async("onbox/health", {})


def end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1])


async def bench_overhead(env: dict[str, str], model: Path, runs: int) -> dict[str, Any]:
    """Median LSP end-to-end latency vs a direct llama-cpp-python call on the identical prompt."""
    import llama_cpp

    from onbox.inference.local import default_threads, model_params_override
    from onbox.inference.worker_profiles import amx_flags, cpu_flags

    session = Session(env, {"completion": {"maxTokens": 48, "debounceMs": 0}})
    await session.start()
    await session.ready.wait()
    # loaded as the worker loads it: AMX repacking crashes this model on AMX CPUs
    with model_params_override(use_extra_bufts=not amx_flags(cpu_flags())):
        llm = llama_cpp.Llama(
            model_path=str(model),
            n_ctx=4096,
            n_threads=default_threads(),
            n_threads_batch=default_threads(),
            n_gpu_layers=-1 if llama_cpp.llama_supports_gpu_offload() else 0,
            n_batch=512,
            verbose=False,
        )
    lsp_times, direct_times, tokens = [], [], []
    for i in range(runs):
        # A different first line each run: neither side can reuse the previous KV cache.
        text = f"# run {i} of the overhead benchmark\n" + FUNCTION
        uri = f"file:///bench/overhead_{i}.py"
        session.open(uri, text)
        elapsed, _ = await session.complete(uri, *end_of(text))
        gen = (await session.health()).generation
        session.close(uri)  # other open documents would be added to the prompt as context
        lsp_times.append(elapsed)
        n = max(1, int(gen.lastTokensOut))
        tokens.append(n)
        llm.reset()
        started = time.perf_counter()
        llm.create_completion(
            text, max_tokens=n, temperature=0.0, top_k=40, top_p=0.95, repeat_penalty=1.0
        )
        direct_times.append(time.perf_counter() - started)
    await session.stop()
    lsp, direct = statistics.median(lsp_times), statistics.median(direct_times)
    return {
        "lsp_median_s": lsp,
        "direct_median_s": direct,
        "ratio": lsp / direct,
        "tokens": tokens,
        "target": 1.10,
    }


def long_file(tokens: int = 1500) -> str:
    lines = []
    i = 0
    # ~2.4 characters per token for this code with the default model's tokenizer
    while len("\n".join(lines)) < tokens * 2.4:
        lines.append(
            f"def handler_{i}(request, limit={i}):\n    return request.get('item_{i}', limit) * {i}\n"
        )
        i += 1
    return "\n".join(lines) + "\ndef handler_final(request):\n    "


async def bench_kv_reuse(env: dict[str, str], runs: int) -> dict[str, Any]:
    """Completion after typing 1-5 characters vs cold, on a ~1,500-token file."""
    session = Session(env, {"completion": {"maxTokens": 16, "debounceMs": 0}})
    await session.start()
    await session.ready.wait()
    cold_eval, cold_total, warm_eval, warm_total, cold_tokens, warm_tokens = [], [], [], [], [], []
    for i in range(runs):
        text = f"# kv run {i}\n" + long_file()
        uri = f"file:///bench/kv_{i}.py"
        session.open(uri, text)
        line, char = end_of(text)
        elapsed, _ = await session.complete(uri, line, char)
        gen = (await session.health()).generation
        cold_total.append(elapsed)
        cold_eval.append(gen.lastTimings.prompt_eval)
        cold_tokens.append(gen.lastPromptTokensEvaluated)
        typed = "ret"[: 1 + i % 3]
        session.type_at(uri, line, char, typed)
        elapsed, _ = await session.complete(uri, line, char + len(typed))
        gen = (await session.health()).generation
        warm_total.append(elapsed)
        warm_eval.append(gen.lastTimings.prompt_eval)
        warm_tokens.append(gen.lastPromptTokensEvaluated)
        session.close(uri)
    await session.stop()
    ce, we = statistics.median(cold_eval), statistics.median(warm_eval)
    ct, wt = statistics.median(cold_total), statistics.median(warm_total)
    return {
        "cold_prompt_tokens": statistics.median(cold_tokens),
        "warm_prompt_tokens_evaluated": statistics.median(warm_tokens),
        "cold_prompt_eval_s": ce,
        "warm_prompt_eval_s": we,
        "prompt_eval_speedup": ce / we,
        "cold_total_s": ct,
        "warm_total_s": wt,
        "end_to_end_speedup": ct / wt,
        "targets": {"prompt_eval_speedup": 5.0, "end_to_end_speedup": 2.0},
    }


async def bench_burst(env: dict[str, str], runs: int) -> dict[str, Any]:
    """20 keystrokes 60 ms apart, each asking for a completion, then a pause."""
    session = Session(env, {"completion": {"maxTokens": 32}})
    await session.start()
    await session.ready.wait()
    started_counts, final_latency, cold_latency = [], [], []
    word = "result = n % 15 and ("
    for r in range(runs):
        base = f"# burst {r}\n" + FUNCTION
        # cold: a single request on the final prompt, in a fresh document
        final_text = base + word[:20]
        cold_uri = f"file:///bench/cold_{r}.py"
        session.open(cold_uri, final_text)
        elapsed, _ = await session.complete(cold_uri, *end_of(final_text))
        cold_latency.append(elapsed)
        session.close(cold_uri)
        await asyncio.sleep(0.5)  # let the debounce window of the cold request pass
        uri = f"file:///bench/burst_{r}.py"
        session.open(uri, base)
        before = (await session.health()).generation.generationsStarted
        line, char = end_of(base)
        pending = []
        for k in range(20):
            session.type_at(uri, line, char + k, word[k])
            pending.append(asyncio.ensure_future(session.complete(uri, line, char + k + 1)))
            await asyncio.sleep(0.06)
        results = await asyncio.gather(*pending)
        final_latency.append(results[-1][0])  # measured from the last keystroke's request
        after = (await session.health()).generation.generationsStarted
        started_counts.append(after - before)
        session.close(uri)
        await asyncio.sleep(0.5)
    await session.stop()
    return {
        "generations_started": started_counts,
        "max_generations_started": max(started_counts),
        "final_latency_median_s": statistics.median(final_latency),
        "cold_latency_median_s": statistics.median(cold_latency),
        "ratio": statistics.median(final_latency) / statistics.median(cold_latency),
        "targets": {"max_generations_started": 3, "ratio": 1.3},
    }


async def bench_memory(env: dict[str, str]) -> dict[str, Any]:
    """RSS of ``onbox serve`` idle without a model, and with the default model loaded."""
    missing = Session(env, {"model": {"path": "/nonexistent/model.gguf"}})
    await missing.start()
    await missing.ready.wait()
    await asyncio.sleep(1.0)
    idle = rss_mb(missing.pid)
    await missing.stop()
    loaded = Session(env, {})
    await loaded.start()
    await loaded.ready.wait()
    text = FUNCTION
    loaded.open("file:///bench/mem.py", text)
    await loaded.complete("file:///bench/mem.py", *end_of(text))
    with_model = rss_mb(loaded.pid)
    await loaded.stop()
    return {
        "idle_no_model_mb": idle,
        "with_model_mb": with_model,
        "targets": {"idle_no_model_mb": 120, "with_model_mb": 600},
    }


async def main_async(runs: int) -> dict[str, Any]:
    from onbox.inference.local import llama_build_info
    from onbox.inference.model import default_model_path

    model = default_model_path()
    tmp = Path(tempfile.mkdtemp(prefix="onbox-bench-"))
    env = {
        **os.environ,
        "ONBOX_DATA_DIR": str(tmp / "data"),
        "ONBOX_TRUST_ROOT": str(tmp / "none.json"),
    }
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "llama_cpp": llama_build_info()},
        "overhead": await bench_overhead(env, model, runs),
        "kv_reuse": await bench_kv_reuse(env, max(3, runs // 2)),
        "burst": await bench_burst(env, max(2, runs // 3)),
        "memory": await bench_memory(env),
    }
    return results


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="onbox completion benchmark (same run, same machine)")
    for col in ("measure", "value", "target", "met"):
        t.add_column(col)

    def row(
        name: str, value: float, target: float, higher_is_better: bool, fmt: str = "{:.2f}"
    ) -> None:
        met = value >= target if higher_is_better else value <= target
        t.add_row(
            name,
            fmt.format(value),
            ("≥ " if higher_is_better else "≤ ") + fmt.format(target),
            "yes" if met else "NO",
        )

    o, k, b, m = r["overhead"], r["kv_reuse"], r["burst"], r["memory"]
    t.add_row(
        "LSP median / direct median (s)",
        f"{o['lsp_median_s']:.3f} / {o['direct_median_s']:.3f}",
        "",
        "",
    )
    row("server overhead ratio", o["ratio"], 1.10, False)
    t.add_row(
        "KV: prompt tokens cold → evaluated warm",
        f"{k['cold_prompt_tokens']:.0f} → {k['warm_prompt_tokens_evaluated']:.0f}",
        "",
        "",
    )
    row("KV: prompt-eval speedup", k["prompt_eval_speedup"], 5.0, True, "{:.1f}x")
    row("KV: end-to-end speedup", k["end_to_end_speedup"], 2.0, True, "{:.1f}x")
    row("burst: generations started (max)", b["max_generations_started"], 3, False, "{:.0f}")
    row("burst: final latency / cold latency", b["ratio"], 1.3, False)
    row("RSS idle, no model (MB)", m["idle_no_model_mb"], 120, False, "{:.0f}")
    row("RSS with default model (MB)", m["with_model_mb"], 600, False, "{:.0f}")
    Console().print(t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = asyncio.run(main_async(args.runs))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_completion.json").write_text(json.dumps(results, indent=2, default=str))
    print_table(results)


if __name__ == "__main__":
    main()
