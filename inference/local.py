"""The llama.cpp engine of the on-box model, through llama-cpp-python.

It runs inside the model worker (:mod:`onbox.inference.worker`), never in the language
server: the server talks to it through :class:`onbox.inference.worker_client.WorkerDestination`,
so that a native fault costs one answer and not the server.

Loaded once and kept warm. One generation runs at a time (a lock); the token loop polls
the request's :class:`CancelToken` after every token. Consecutive prompts that share a
beginning reuse llama.cpp's KV cache (``Llama.generate`` keeps the longest common token
prefix), and the prompt window is anchored on line blocks so that typing at the end of a
file extends the previous prompt instead of shifting it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from onbox.inference import defaults
from onbox.inference.destination import CancelToken, Completion, CompletionRequest, DestinationKind
from onbox.inference.errors import Cancelled, ModelError
from onbox.inference.fim import (
    FimFormat,
    FimTokens,
    fim_token_layout,
    identify_family,
    trim_to_budget,
)
from onbox.inference.model import (
    check_model_file,
    default_model_path,
    hash_progress,
    model_display_name,
    sha256_file,
)
from onbox.inference.postprocess import block_finished

logger = logging.getLogger(__name__)

#: Lines per anchor block: the prompt window starts on a multiple of this many lines.
WINDOW_ANCHOR_LINES = 32
#: A prefix-only prompt stops at a blank-line run or a markdown fence (chatty models).
PLAIN_STOPS = ("\n\n\n", "```")


@dataclass
class ModelSettings:
    """Settings of the on-box model (``onbox.model`` and ``onbox.completion``)."""

    path: str | None = None
    context_size: int = 4096
    threads: int = 0
    gpu_layers: int = -1
    max_tokens: int = defaults.MAX_TOKENS
    temperature: float = defaults.TEMPERATURE
    prefix_tokens: int = defaults.PREFIX_TOKENS
    suffix_tokens: int = defaults.SUFFIX_TOKENS
    extra_buffer_types: str = "auto"  # "auto" (off on AMX CPUs) | "on" | "off"
    worker_idle_seconds: float = 600.0  # the shared worker exits after this long unused
    deadline_seconds: float = 60.0  # a generation running longer counts as a hang

    def load_settings(self) -> dict[str, Any]:
        """The settings that change how the model is loaded (one worker per distinct set)."""
        return {
            "contextSize": self.context_size,
            "threads": self.threads,
            "gpuLayers": self.gpu_layers,
            "extraBufferTypes": self.extra_buffer_types,
        }


class OnBoxModel(Protocol):
    """What the server needs from the on-box destination (in-process or the worker)."""

    name: str
    kind: str
    clearance: str
    error: str | None
    generations_started: int

    @property
    def loaded(self) -> bool:
        """Whether the model is ready."""
        ...

    @property
    def model_name(self) -> str:
        """File name of the model."""
        ...

    def load(self, report: Callable[[str], None] | None = None) -> None:
        """Load the model; raise :class:`ModelError` with the fix."""
        ...

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        """Generate a continuation."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the journal records about the destination."""
        ...


@contextlib.contextmanager
def model_params_override(**fields: Any) -> Iterator[None]:
    """Set ``llama_model_params`` fields that ``llama_cpp.Llama`` has no argument for.

    ``Llama.__init__`` starts from ``llama_model_default_params()``; while this context is
    active that function returns the defaults with ``fields`` applied (e.g.
    ``use_extra_bufts=False``, which keeps llama.cpp from repacking weights into AMX or
    other extra buffers). Only used around one ``Llama(...)`` call at a time.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def patched() -> Any:
        params = original()
        for key, value in fields.items():
            setattr(params, key, value)
        return params

    lib.llama_model_default_params = patched
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def gpu_offload_supported() -> bool:
    """Whether this llama.cpp build can offload layers to a GPU."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:
        return False


def llama_build_info() -> dict[str, Any]:
    """Version and system info of the llama.cpp build, for ``onbox doctor``."""
    try:
        import llama_cpp

        return {
            "version": getattr(llama_cpp, "__version__", "unknown"),
            "systemInfo": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
            "gpuOffload": bool(llama_cpp.llama_supports_gpu_offload()),
        }
    except Exception as exc:
        return {
            "version": None,
            "systemInfo": f"llama-cpp-python unavailable: {exc}",
            "gpuOffload": False,
        }


_LLAMA_LOGGER = logging.getLogger("onbox.llama_cpp")
# ggml_log_level: 0 none, 1 debug, 2 info, 3 warn, 4 error, 5 continuation. llama.cpp's
# warnings are mostly informational ("using full-size SWA cache"), so they log at INFO.
_LLAMA_LEVELS = {
    0: logging.DEBUG,
    1: logging.DEBUG,
    2: logging.DEBUG,
    3: logging.INFO,
    4: logging.ERROR,
}
#: The ctypes callback handed to llama.cpp; kept referenced so it is never collected.
_log_callback: Any = None


def route_llama_logs() -> None:
    """Send llama.cpp's C-level log lines to Python logging (stderr or the log file), never stdout."""
    global _log_callback
    if _log_callback is not None:
        return
    import ctypes

    import llama_cpp

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", "replace").rstrip()
        if message:
            _LLAMA_LOGGER.log(_LLAMA_LEVELS.get(level, logging.DEBUG), "%s", message)

    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    _log_callback = _callback


def default_threads() -> int:
    """Threads for generation: the CPUs this process may use, capped at 8."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:
        count = os.cpu_count() or 1
    return max(1, min(8, count))


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Number of leading items ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaCppDestination:
    """The on-box model behind the :class:`~onbox.inference.destination.Destination` interface."""

    kind: str = DestinationKind.LLAMA_CPP

    def __init__(
        self,
        settings: ModelSettings,
        *,
        name: str = "on-box",
        clearance: str = "restricted",
        use_extra_bufts: bool | None = None,
        vocab_only: bool = False,
        before_decode: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.clearance = clearance
        self.settings = settings
        if use_extra_bufts is None:
            # As the worker's first profile does: llama.cpp's AMX repacking crashes at the
            # first decode on AMX CPUs, so anything that loads the model in-process (a
            # bench, a script) gets the safe default too.
            from onbox.inference.worker_profiles import amx_flags, cpu_flags

            use_extra_bufts = not amx_flags(cpu_flags())
        self.use_extra_bufts = use_extra_bufts
        #: Load the tokenizer only (prompt building without weights; no generation).
        self.vocab_only = vocab_only
        #: Called before every generation reaches llama.cpp (the worker's fault injection).
        self.before_decode = before_decode
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._llm: Any = None
        self._fim: FimFormat | None = None
        self._fim_tokens = FimTokens(-1, -1, -1)
        self.model_path: Path | None = None
        self.model_sha256: str | None = None
        self.error: str | None = None
        self.generations_started = 0
        self.last_prompt_tokens_evaluated = 0
        self.last_finish: str | None = None
        self.last_tokens_out = 0
        self.last_timings: dict[str, float] = {}

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory and ready."""
        return self._llm is not None

    @property
    def model_name(self) -> str:
        """File name of the model (or of the configured path before loading)."""
        return model_display_name(self.model_path, self.settings.path)

    @property
    def fim_format(self) -> FimFormat | None:
        """The FIM layout of the loaded model, or ``None`` for prefix-only prompting."""
        return self._fim

    def load(self, report: Callable[[str], None] | None = None) -> None:
        """Resolve, verify and load the model once; raise :class:`ModelError` with the fix."""
        with self._load_lock:
            if self._llm is not None:
                return
            try:
                self._load(report or (lambda _msg: None))
                self.error = None
            except ModelError as exc:
                self.error = str(exc)
                raise

    def _load(self, report: Callable[[str], None]) -> None:
        if self.settings.path:
            path = Path(self.settings.path).expanduser()
        else:
            report("preparing the embedded default model")
            path = default_model_path(report)
        check_model_file(path)
        report(f"loading {path.name}")
        try:
            import llama_cpp
        except ImportError as exc:
            raise ModelError(
                "llama-cpp-python is not installed; run `pip install llama-cpp-python`"
            ) from exc
        gpu_layers = self.settings.gpu_layers
        if gpu_layers < 0:
            gpu_layers = -1 if gpu_offload_supported() else 0
        threads = self.settings.threads or default_threads()
        route_llama_logs()
        try:
            # verbose=False would make llama-cpp-python point file descriptors 1 and 2 at
            # /dev/null while loading, swallowing LSP messages written meanwhile (stdout is
            # the LSP channel). Keep the descriptors; llama.cpp's own logging goes to
            # Python logging instead, and Python-level chatter is captured.
            with (
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.redirect_stdout(io.StringIO()),
                model_params_override(use_extra_bufts=self.use_extra_bufts),
            ):
                llm = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=self.settings.context_size,
                    n_threads=threads,
                    n_threads_batch=threads,
                    n_gpu_layers=gpu_layers,
                    n_batch=512,
                    vocab_only=self.vocab_only,
                    verbose=True,
                )
            llm.verbose = False
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelError(
                f"llama.cpp could not load {path}: {exc}; the file may be corrupt or of an "
                "architecture this llama.cpp build does not support — re-download or re-convert it"
            ) from exc
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        tokens = FimTokens(
            int(llama_cpp.llama_vocab_fim_pre(vocab)),
            int(llama_cpp.llama_vocab_fim_suf(vocab)),
            int(llama_cpp.llama_vocab_fim_mid(vocab)),
        )
        self._fim = identify_family(llm.metadata, tokens, llm._model.token_get_text)
        self._fim_tokens = tokens
        self._llm = llm
        self.model_path = path
        self.model_sha256 = sha256_file(path, hash_progress(report, path))
        logger.info(
            "loaded %s (%s layers on GPU, %d threads, extra buffer types %s, FIM: %s)",
            path.name,
            gpu_layers,
            threads,
            "on" if self.use_extra_bufts else "off",
            self._fim.family if self._fim else "none",
        )

    def describe(self) -> dict[str, Any]:
        """Name, kind, model and its sha256 (what the journal records for on-box)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "endpoint": "in-process",
            "model": self.model_name,
            "modelSha256": self.model_sha256,
            "fim": self._fim.family if self._fim else None,
        }

    def smoke_decode(self) -> float:
        """Decode one token, the step that faults on a bad build/CPU pairing; seconds taken."""
        self.load()
        with self._lock:
            if self.before_decode is not None:
                self.before_decode()
            llm = self._llm
            started = time.perf_counter()
            llm.reset()
            bos = int(llm.token_bos())
            llm.eval([bos if bos >= 0 else 0])
            return time.perf_counter() - started

    # -- prompt building -------------------------------------------------------------

    def _tokenize(self, text: str, *, bos: bool = False) -> list[int]:
        data = text.encode("utf-8", "surrogatepass").replace(b"\x00", b"")
        return list(self._llm.tokenize(data, add_bos=bos, special=False))

    def _window_prefix(self, prefix: str, budget: int) -> str:
        """The tail of ``prefix`` that fits ``budget`` tokens, starting on an anchored line."""
        approx = prefix[-budget * 8 :]
        lines = approx.split("\n")
        offset_lines = prefix.count("\n") - (len(lines) - 1)  # absolute index of lines[0]
        start = 0
        if len(approx) < len(prefix):  # lines[0] may be cut: start at the next anchored line
            start = 1 + (-(offset_lines + 1)) % WINDOW_ANCHOR_LINES
        while start < len(lines):
            candidate = "\n".join(lines[start:])
            if len(self._tokenize(candidate)) <= budget:
                return candidate
            start += WINDOW_ANCHOR_LINES
        # no anchored block fits: the last ``budget`` tokens, from a line start when possible
        tokens = self._tokenize(approx)[-budget:]
        tail = bytes(self._llm.detokenize(tokens)).decode("utf-8", "ignore")
        return tail.split("\n", 1)[1] if "\n" in tail[:-1] else tail

    def build_prompt(self, request: CompletionRequest) -> list[int]:
        """Token ids of the prompt for ``request`` (FIM when the model has it)."""
        s = self.settings
        room = max(64, s.context_size - request.max_tokens - 8)
        context = "".join(f"# file: {c.path}\n{c.text}\n" for c in request.context)
        prefix_text = context + request.prefix
        if self._fim is None:
            budget = min(room, s.prefix_tokens + s.suffix_tokens)
            return self._tokenize(self._window_prefix(prefix_text, budget), bos=True)
        budget_p = min(room - min(s.suffix_tokens, room // 4), s.prefix_tokens)
        prefix_tokens = self._tokenize(self._window_prefix(prefix_text, budget_p))
        suffix_tokens = self._tokenize(request.suffix[: s.suffix_tokens * 8])
        kept_p, kept_s = trim_to_budget(prefix_tokens, suffix_tokens, budget_p, s.suffix_tokens)
        bos = [int(self._llm.token_bos())] if self._llm.token_bos() >= 0 else []
        return fim_token_layout(self._fim, self._fim_tokens, kept_p, kept_s, bos)

    # -- generation ------------------------------------------------------------------

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        """Generate a continuation; stops within one token once ``cancel`` is set."""
        if cancel.cancelled:
            raise Cancelled(cancel.reason)
        self.load()
        import llama_cpp

        with self._lock:
            if cancel.cancelled:  # superseded while waiting for the model: never reaches it
                raise Cancelled(cancel.reason)
            llm = self._llm
            started = time.perf_counter()
            prompt = self.build_prompt(request)
            cached = common_prefix_length(llm._input_ids[: llm.n_tokens].tolist(), prompt)
            if cached >= len(prompt):
                cached = len(prompt) - 1
            self.last_prompt_tokens_evaluated = len(prompt) - cached
            self.generations_started += 1
            if self.before_decode is not None:
                self.before_decode()
            vocab = llama_cpp.llama_model_get_vocab(llm.model)
            stops = PLAIN_STOPS if self._fim is None else self._fim.stop_texts
            out: list[int] = []
            text = ""
            finish = "length"
            first_token_at: float | None = None
            temp = request.temperature
            for token in llm.generate(prompt, temp=temp, top_k=40, top_p=0.95, repeat_penalty=1.0):
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                out.append(token)
                text = bytes(llm.detokenize(out)).decode("utf-8", "ignore")
                hit = min((i for s in stops if (i := text.find(s)) >= 0), default=-1)
                if hit >= 0:
                    text = text[:hit]
                    finish = "stop"
                    break
                if cancel.cancelled:
                    finish = "cancelled"
                    break
                if (
                    request.stop_at_block_end
                    and "\n" in text[-8:]
                    and block_finished(request.prefix, request.suffix, text)
                ):
                    finish = "stop"
                    break
                if len(out) >= request.max_tokens:
                    break
            ended = time.perf_counter()
            self.last_finish, self.last_tokens_out = finish, len(out)
        first = first_token_at or ended
        self.last_timings = {
            "prompt_eval": first - started,
            "generate": ended - first,
            "total": ended - started,
        }
        prompt_bytes = b"".join(int(t).to_bytes(4, "little") for t in prompt)
        return Completion(
            text=text,
            model=self.model_name,
            finish_reason=finish,
            prompt_sha256=hashlib.sha256(prompt_bytes).hexdigest(),
            tokens_in=len(prompt),
            tokens_out=len(out),
            timings={
                "prompt_eval": first - started,
                "generate": ended - first,
                "total": ended - started,
                "prompt_tokens_evaluated": float(len(prompt) - cached),
            },
        )
