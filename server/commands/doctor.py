"""``onbox doctor``: is this workstation ready? Model, GPU offload, llama.cpp, policy, journal."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from typing import Any

from onbox.server.cli import EXIT_FAILED, EXIT_OK

#: How long one load + one-decode smoke test may take in its child process.
SMOKE_TIMEOUT = 300.0


def smoke_test(config: dict[str, Any]) -> dict[str, Any]:
    """Load the model and decode one token in a child process, stepping down on a crash.

    Tries each load profile until one survives (a crash here costs a child, never this
    process), records the outcome in the profile memory, and returns the profile in use
    with why, plus each attempt.
    """
    from onbox.inference.worker_client import signal_name
    from onbox.inference.worker_profiles import ProfileMemory

    attempts: list[dict[str, Any]] = []
    profile: str | None = None
    result: dict[str, Any] = {}
    while True:
        command = [sys.executable, "-m", "onbox.inference.worker", "--smoke"]
        command += ["--config", json.dumps(config)] + (["--profile", profile] if profile else [])
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=SMOKE_TIMEOUT)
        except subprocess.TimeoutExpired:
            attempts.append({"profile": profile or "configured", "outcome": "hang"})
            outcome = None
        else:
            outcome = proc.returncode
            lines = proc.stdout.strip().splitlines()
            result = json.loads(lines[-1]) if proc.returncode in (0, 1) and lines else {}
        if outcome in (0, 1) and result:
            if result.get("ok"):
                attempts.append({"profile": result["profile"]["name"], "outcome": "ok"})
                ProfileMemory().record_works(result["machineKey"], result["profile"]["name"])
            return {**result, "attempts": attempts}
        name = profile or "configured"
        cause = "hang" if outcome is None else signal_name(outcome)
        if outcome is not None:
            attempts.append({"profile": name, "outcome": cause})
        profiles = result.get("profiles") or ["configured", "no-extra-buffers", "cpu-only"]
        later = profiles[profiles.index(name) + 1 :] if name in profiles else []
        if not later:
            return {
                "ok": False,
                "error": f"every load profile crashed: {attempts}",
                "attempts": attempts,
            }
        profile = later[0]


def register(sub: Any) -> None:
    """Add the ``doctor`` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor",
        help="check the model, GPU offload, llama.cpp build, policy and journal",
        epilog="Exit codes: 0 everything needed works, 1 something needs fixing (see the table).",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--model", help="check this GGUF instead of the configured one")
    p.add_argument("--no-load", action="store_true", help="do not load the model (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print a checklist; exit 1 if the model cannot be used."""
    from onbox.server.settings import Settings
    from onbox.server.wiring import Wiring

    settings = Settings()
    if args.model:
        settings.model.path = args.model
    wiring = Wiring(settings)
    state, error = "not loaded", None
    smoke: dict[str, Any] = {}
    if not args.no_load:
        from onbox.server.wiring import worker_model_settings

        config = dataclasses.asdict(worker_model_settings(settings))
        smoke = smoke_test(config)
        if smoke.get("ok"):
            state = "ready"
        else:
            state, error = "error", str(smoke.get("error"))
    report = wiring.health(state, error)
    if smoke.get("ok"):
        report["model"].update(path=smoke["modelPath"], sha256=smoke["modelSha256"])
        report["llamaCpp"] = smoke["build"]
        report["gpuOffload"] = bool(smoke["build"].get("gpuOffload"))
    report["smokeTest"] = smoke
    report["settings"] = {
        "model": vars(settings.model),
        "completion": vars(settings.completion),
        "policy": vars(settings.policy),
        "journal": vars(settings.journal),
    }
    wiring.stop()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return EXIT_FAILED if error else EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"onbox {report['version']} doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("details", overflow="fold")
    m = report["model"]
    ok = "[green]ok[/green]"
    if error:
        model_status, model_details = "[red]error[/red]", error
    elif args.no_load:
        model_status = "[yellow]not checked[/yellow]"
        model_details = (
            f"{m['path'] or 'embedded default (Gemma 3 270M)'}; run without --no-load to load it"
        )
    else:
        model_status, model_details = ok, f"{m['path']} ({state})\nsha256 {m['sha256']}"
    table.add_row("model", model_status, model_details)
    smoke = report["smokeTest"]
    if smoke.get("ok"):
        profile = smoke["profile"]
        tried = ", ".join(f"{a['profile']}: {a['outcome']}" for a in smoke["attempts"])
        table.add_row(
            "load profile",
            ok if profile["name"] == "configured" else "[yellow]stepped down[/yellow]",
            f"{profile['name']} (extra buffer types "
            f"{'on' if profile['extraBufferTypes'] else 'off'}, GPU layers {profile['gpuLayers']}):"
            f" {profile['why']}\nsmoke test in a child process: load {smoke['loadSeconds']:.2f} s,"
            f" one decode {smoke['decodeSeconds'] * 1000:.0f} ms ({tried})",
        )
    table.add_row(
        "GPU offload",
        ok if report["gpuOffload"] else "[yellow]cpu only[/yellow]",
        "llama.cpp built with GPU support"
        if report["gpuOffload"]
        else "this llama.cpp build has no GPU backend; see README (CUDA/Metal)",
    )
    table.add_row(
        "llama.cpp", ok, f"{report['llamaCpp']['version']}\n{report['llamaCpp']['systemInfo']}"
    )
    pol = report["policy"]
    store = pol.get("store") or {}
    details = [
        f"{pol.get('id')} (serial {pol.get('serial')}, expires {pol.get('expires') or 'never'})",
        f"from {pol.get('source')}",
    ]
    if pol.get("warning") or store.get("warning"):
        details.append(f"warning: {pol.get('warning') or store.get('warning')}")
    if store.get("last_rejection"):
        details.append(f"last rejected bundle: {store['last_rejection']}")
    failing = pol.get("id") == "builtin-fail-closed" or pol.get("expired")
    table.add_row("policy", "[yellow]fail-closed[/yellow]" if failing else ok, "\n".join(details))
    tr = report["trustRoot"]
    table.add_row(
        "trust root",
        ok if tr["present"] else "[yellow]missing[/yellow]",
        tr["path"]
        + ("" if tr["present"] else " — no admin keys: the built-in fail-closed policy applies"),
    )
    j = report["journal"]
    table.add_row(
        "journal",
        ok if j["writable"] else "[red]unavailable[/red]",
        f"{j['dir']} {j['error'] or ''}",
    )
    Console().print(table)
    return EXIT_FAILED if error else EXIT_OK
