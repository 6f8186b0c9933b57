"""The model worker's pure parts: wire framing, the peer check, profiles and their memory."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import pytest

from onbox.inference.destination import Completion, CompletionRequest, ContextSnippet
from onbox.inference.errors import ModelError
from onbox.inference.worker_client import cause_from_log, signal_name
from onbox.inference.worker_profiles import (
    ProfileMemory,
    choose_profile,
    cpu_flags,
    profiles_for,
    unavailable_message,
)
from onbox.inference.worker_protocol import (
    FrameReader,
    ProtocolError,
    completion_from_json,
    completion_to_json,
    encode,
    peer_credentials,
    peer_refusal,
    recv_message,
    request_from_json,
    request_to_json,
    runtime_dir,
    send_message,
    socket_path,
    worker_name,
)

AMX_CPU = frozenset({"sse4_2", "avx512f", "amx_tile", "amx_int8", "amx_bf16"})
PLAIN_CPU = frozenset({"sse4_2", "avx2"})


# -- who may connect -------------------------------------------------------------------------


def test_another_uid_is_refused_and_the_same_uid_is_not() -> None:
    assert peer_refusal(1000, 1000) is None
    refusal = peer_refusal(1001, 1000)
    assert refusal is not None and "1001" in refusal and "1000" in refusal
    assert peer_refusal(0, 1000) is not None, "not even root gets another user's model"


def test_peer_credentials_name_this_process() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        pid, uid, _ = peer_credentials(a)
        assert (pid, uid) == (os.getpid(), os.getuid())
        assert peer_refusal(uid, os.getuid()) is None


# -- the wire ----------------------------------------------------------------------------------


def test_messages_survive_any_split() -> None:
    messages = [{"op": "load", "id": "1"}, {"text": "é\ud800 \x00" * 1000}, {}]
    data = b"".join(encode(m) for m in messages)
    for step in (1, 3, 7, 4096, len(data)):
        reader = FrameReader()
        out = []
        for i in range(0, len(data), step):
            out += reader.feed(data[i : i + step])
        assert out == messages


def test_blocking_send_and_receive_and_eof() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        send_message(a, {"event": "hello", "pid": 1})
        assert recv_message(b) == {"event": "hello", "pid": 1}
        a.shutdown(socket.SHUT_WR)
        assert recv_message(b) is None


def test_a_frame_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ProtocolError):
        FrameReader().feed(len(b"[1]").to_bytes(4, "big") + b"[1]")
    with pytest.raises(ProtocolError):
        FrameReader().feed((1 << 31).to_bytes(4, "big"))


def test_request_and_completion_round_trip() -> None:
    request = CompletionRequest(
        prefix="def f(", suffix=")\n", language="python", path="/a.py",
        context=(ContextSnippet("/b.py", "x = 1", "restricted"),),
        max_tokens=8, temperature=0.0, stop=("\n\n",), stop_at_block_end=False,
    )  # fmt: skip
    assert request_from_json(request_to_json(request)) == request
    completion = Completion("x)", "m.gguf", "stop", "ab", 3, 2, timings={"total": 0.5})
    assert completion_from_json(completion_to_json(completion)) == completion


# -- where the socket lives ---------------------------------------------------------------------


def test_runtime_dir_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "rt"
    target.mkdir(mode=0o755)
    os.chmod(target, 0o755)
    monkeypatch.setenv("ONBOX_RUNTIME_DIR", str(target))
    assert runtime_dir() == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_runtime_dir_without_xdg_falls_back_to_a_private_temp_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONBOX_RUNTIME_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    path = runtime_dir()
    assert path == tmp_path / f"onbox-{os.getuid()}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_worker_name_depends_on_model_and_load_settings(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    base = {"contextSize": 4096, "gpuLayers": -1}
    assert worker_name(model, base) == worker_name(model, dict(base))
    assert worker_name(model, base) != worker_name(model, {**base, "contextSize": 2048})
    assert worker_name(model, base) != worker_name(tmp_path / "n.gguf", base)


def test_too_long_socket_path_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="ONBOX_RUNTIME_DIR"):
        socket_path(tmp_path / ("d" * 120), "model-0123456789abcdef")


# -- profiles -------------------------------------------------------------------------------


def test_amx_cpu_loads_without_extra_buffer_types_by_default() -> None:
    configured = profiles_for("auto", -1, AMX_CPU)[0]
    assert configured.extra_bufts is False
    assert "amx_tile" in configured.why
    assert profiles_for("on", -1, AMX_CPU)[0].extra_bufts is True
    assert profiles_for("auto", -1, PLAIN_CPU)[0].extra_bufts is True


def test_profiles_step_down_and_are_listed_once() -> None:
    names = [p.name for p in profiles_for("auto", -1, PLAIN_CPU)]
    assert names == ["configured", "no-extra-buffers", "cpu-only"]
    steps = profiles_for("auto", -1, PLAIN_CPU)
    assert (steps[1].extra_bufts, steps[2].gpu_layers) == (False, 0)
    # already without extra buffers: the second step would load the same way
    assert [p.name for p in profiles_for("auto", -1, AMX_CPU)] == ["configured", "cpu-only"]
    assert [p.name for p in profiles_for("off", 0, PLAIN_CPU)] == ["configured"]


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu amx_tile avx2\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "amx_tile", "avx2"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_memory_steps_down_once_per_crash_and_remembers_what_works(tmp_path: Path) -> None:
    memory = ProfileMemory(tmp_path / "profiles.json")
    profiles = profiles_for("auto", -1, PLAIN_CPU)
    assert choose_profile(profiles, memory.entry("k")) == profiles[0]
    assert memory.record_crash("k", "configured", "SIGSEGV") == 1
    # every client of the worker sees the same crash: it counts once
    assert memory.record_crash("k", "configured", "SIGSEGV") == 1
    assert choose_profile(profiles, memory.entry("k")) == profiles[1]
    memory.record_works("k", "no-extra-buffers")
    again = ProfileMemory(tmp_path / "profiles.json")  # another process reads the file
    assert choose_profile(profiles, again.entry("k")) == profiles[1]
    assert again.entry("other-machine") == {"works": None, "crashed": {}}


def test_every_profile_crashed_is_unavailable(tmp_path: Path) -> None:
    memory = ProfileMemory(tmp_path / "profiles.json")
    profiles = profiles_for("auto", -1, PLAIN_CPU)
    for profile in profiles:
        memory.record_crash("k", profile.name, "SIGSEGV")
    entry = memory.entry("k")
    assert choose_profile(profiles, entry) is None
    message = unavailable_message(entry)
    assert message.startswith("on-box model unavailable: crashed 3 times")
    assert message.endswith("see onbox doctor")
    memory.forget("k")
    assert choose_profile(profiles, memory.entry("k")) == profiles[0]


def test_a_profile_that_worked_and_then_crashed_is_dropped(tmp_path: Path) -> None:
    memory = ProfileMemory(tmp_path / "profiles.json")
    memory.record_works("k", "configured")
    memory.record_crash("k", "configured", "SIGKILL")
    assert memory.entry("k") == {"works": None, "crashed": {"configured": "SIGKILL"}}


# -- naming what happened -----------------------------------------------------------------------


def test_signal_names() -> None:
    assert signal_name(-signal.SIGSEGV) == "SIGSEGV"
    assert signal_name(-signal.SIGKILL) == "SIGKILL"
    assert signal_name(3) == "exit status 3"


def test_fatal_signal_is_read_from_the_workers_own_log_section() -> None:
    log = (
        "t worker[10] INFO started\nFatal Python error: Aborted\n"
        "t worker[20] INFO started\nFatal Python error: Segmentation fault\n\nThread 0x1"
    )
    assert cause_from_log(log, 20) == "SIGSEGV"
    assert cause_from_log(log, 10) == "SIGABRT"  # not the next worker's fault
    assert cause_from_log(log, 30) is None


def test_in_process_engine_defaults_to_no_extra_buffers_on_amx() -> None:
    """A model loaded in-process (benches, scripts) avoids llama.cpp's AMX repacking on AMX
    CPUs, which crashes the default model at the first decode; an explicit choice stands."""
    from onbox.inference.local import LlamaCppDestination, ModelSettings
    from onbox.inference.worker_profiles import amx_flags, cpu_flags

    auto = LlamaCppDestination(ModelSettings(path="unused.gguf"))
    assert auto.use_extra_bufts is (not amx_flags(cpu_flags()))
    forced = LlamaCppDestination(ModelSettings(path="unused.gguf"), use_extra_bufts=True)
    assert forced.use_extra_bufts is True
