"""``onbox doctor``: is this workstation ready? Model, GPU offload, llama.cpp, policy, journal."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from typing import Any

from onbox.server.cli import EXIT_FAILED, EXIT_OK

EXIT_CODES = """\
exit codes:
  0  ready. Yellow rows are not failures: a machine without a trust root and without
     policy sources is unmanaged, and the built-in fail-closed policy applies (every
     file restricted, completions on-box only).
  1  something needs fixing: the model cannot be loaded and run, the journal cannot be
     written, or policy sources are configured (a managed machine) but the trust root
     that verifies their bundles is missing, so no admin policy can ever apply.
"""

#: How long one load + one-decode smoke test may take in its child process.
SMOKE_TIMEOUT = 300.0


def smoke_test(config: dict[str, Any]) -> dict[str, Any]:
    """Load the model and decode one token in a child process, stepping down on a crash.

    Tries each load profile until one survives (a crash here costs a child, never this
    process), records the outcome in the profile memory, and returns the profile in use
    with why, plus each attempt.
    """
    from onbox.inference.worker_client import signal_name
    from onbox.inference.worker_profiles import ProfileMemory, cpu_flags, profiles_for

    # The child's own ladder (a crashed child reports nothing): on an AMX CPU the
    # configured profile already has no extra buffer types, so the next one is cpu-only.
    ladder = [
        p.name
        for p in profiles_for(
            config.get("extra_buffer_types", "auto"), config.get("gpu_layers", -1), cpu_flags()
        )
    ]
    attempts: list[dict[str, Any]] = []
    profile: str | None = None
    result: dict[str, Any] = {}
    while True:
        # -P: a checkout's onbox/ folder in the current directory must not shadow the install.
        command = [sys.executable, "-P", "-m", "onbox.inference.worker", "--smoke"]
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
        later = ladder[ladder.index(name) + 1 :] if name in ladder else []
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
        description="Check that this workstation is ready: model, GPU offload, llama.cpp "
        "build, policy, trust root and journal.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--model", help="check this GGUF instead of the configured one")
    p.add_argument("--no-load", action="store_true", help="do not load the model (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print a checklist; exit 1 if something needs fixing (see :data:`EXIT_CODES`)."""
    from onbox.server.settings import Settings
    from onbox.server.status import ServerState
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
            state = ServerState.READY
        else:
            state, error = ServerState.ERROR, str(smoke.get("error"))
    report = wiring.health(state, error)
    if smoke.get("ok"):
        report["model"].update(path=smoke["modelPath"], sha256=smoke["modelSha256"])
        report["llamaCpp"] = smoke["build"]
        report["gpuOffload"] = bool(smoke["build"].get("gpuOffload"))
    report["smokeTest"] = smoke
    problems = failures(report, error)
    report["problems"] = problems
    report["settings"] = {
        "model": vars(settings.model),
        "completion": vars(settings.completion),
        "policy": vars(settings.policy),
        "journal": vars(settings.journal),
    }
    wiring.stop()
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return EXIT_FAILED if problems else EXIT_OK
    print_table(report, error, no_load=args.no_load, state=state)
    return EXIT_FAILED if problems else EXIT_OK


def policy_sources_configured() -> bool:
    """Whether ``[policy] sources`` names any source (this machine expects signed policy)."""
    from onbox.classification.sources import configured_sources
    from onbox.classification.trust import SourceError

    try:
        return bool(configured_sources())
    except SourceError:
        return True  # a broken sources file still says the machine is meant to be managed


def failures(report: dict[str, Any], model_error: str | None) -> list[str]:
    """What makes ``doctor`` exit 1, one line each (empty: ready)."""
    problems = []
    if model_error:
        problems.append(f"model: {model_error}")
    journal = report["journal"]
    if not journal["writable"]:
        problems.append(f"journal: {journal['dir']} cannot be written ({journal['error']})")
    if not report["trustRoot"]["present"] and policy_sources_configured():
        problems.append(
            f"trust root: missing at {report['trustRoot']['path']}, but policy sources are"
            " configured: no bundle can be verified, so no admin policy will ever apply"
        )
    return problems


def rejection_line(rejection: dict[str, Any]) -> str:
    """The policy store's last rejection, for people (it is stored as a record)."""
    serial = rejection.get("serial")
    what = f"serial {serial}" if serial is not None else "a bundle"
    where = f" from {rejection['origin']}" if rejection.get("origin") else ""
    when = f" at {rejection['at']}" if rejection.get("at") else ""
    return f"last rejected: {what}{where}{when}: {rejection.get('reason', 'no reason recorded')}"


def print_table(report: dict[str, Any], error: str | None, *, no_load: bool, state: str) -> None:
    """The human checklist."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"onbox {report['version']} doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("details", overflow="fold")
    m = report["model"]
    ok = "[green]ok[/green]"
    if error:
        model_status, model_details = "[red]error[/red]", escape(error)
    elif no_load:
        model_status = "[yellow]not checked[/yellow]"
        model_details = (
            f"{escape(m['path'] or 'embedded default (Gemma 3 270M)')};"
            " run without --no-load to load it"
        )
    else:
        model_status = ok
        model_details = f"{escape(str(m['path']))} ({state})\nsha256 {m['sha256']}"
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
        "llama.cpp",
        ok,
        escape(f"{report['llamaCpp']['version']}\n{report['llamaCpp']['systemInfo']}"),
    )
    pol = report["policy"]
    store = pol.get("store") or {}
    details = [
        f"{pol.get('id')} (serial {pol.get('serial')}, expires {pol.get('expires') or 'never'})",
        f"from {pol.get('source')}",
    ]
    if pol.get("warning") or store.get("warning"):
        details.append(f"warning: {pol.get('warning') or store.get('warning')}")
    if isinstance(store.get("last_rejection"), dict):
        details.append(rejection_line(store["last_rejection"]))
    failing = pol.get("id") == "builtin-fail-closed" or pol.get("expired")
    table.add_row(
        "policy",
        "[yellow]fail-closed[/yellow]" if failing else ok,
        escape("\n".join(details)),
    )
    tr = report["trustRoot"]
    if tr["present"]:
        trust_status, trust_why = ok, ""
    elif any(p.startswith("trust root:") for p in report["problems"]):
        trust_status = "[red]missing[/red]"
        trust_why = " — policy sources are configured, but no bundle can be verified without it"
    else:
        trust_status = "[yellow]missing[/yellow]"
        trust_why = " — unmanaged: the built-in fail-closed policy applies"
    table.add_row("trust root", trust_status, escape(str(tr["path"])) + trust_why)
    j = report["journal"]
    where = f"{j['dir']} ({j['source']})" if j.get("source") else str(j["dir"])
    detail = " — ".join(str(x) for x in (where, j.get("note"), j["error"]) if x)
    table.add_row("journal", ok if j["writable"] else "[red]unavailable[/red]", escape(detail))
    Console().print(table)
