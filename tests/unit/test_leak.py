"""The leak test: nothing above a destination's clearance, and no secret, ever leaves.

Hypothesis drives sessions of editor operations — open, edit, paste a secret, rename
across labelled folders, close, change ``.gitattributes``, CODEOWNERS or the policy,
make destinations fail and recover, let the journal fail, cancel requests — over a real
git repository, with the real :class:`Classifier` and :class:`Router` and the real
signed journal. Two recording servers play the "cloud": ``cloud`` (Anthropic wire
format, clearance public) and ``corp`` (OpenAI wire format, clearance internal).

The oracle is the test's own model of each file's label (folder attribute, owner,
secret present, policy). Every file carries a canary token minted for the label the
model gives it; when the model's label changes the token is re-minted, so a token of
label L only ever sits in a file the model says is L. After every request:

* no body a server received holds a token above that server's clearance,
* no body holds any pasted secret value,

and at the end of each session every request a server recorded has a durable egress
entry in the journal with the same SHA-256 and destination.

Requests also queue: a request captured with the labels, texts and router of one moment
is sent later, after relabels, policy swaps, remote edits and settings changes. A token
counts at the *current* label of the document it was minted for, so a queued request
that carries a now-restricted file's old text to the cloud is caught: the label that
permits egress must be decided at the gate, not when the request queued.

``ONBOX_LEAK_SESSIONS`` sets the number of sessions: 500 in CI, several thousand nightly.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from onbox.audit import JournalError, iter_entries, open_journal
from onbox.classification.authority import LabelAuthority
from onbox.classification.classifier import Classifier
from onbox.classification.policy import parse_policy
from onbox.inference.destination import CancelToken, Completion, CompletionRequest
from onbox.inference.errors import Cancelled
from onbox.inference.health import CircuitBreaker
from onbox.inference.remote import RemoteDestination, build_destinations
from onbox.inference.routing import DocumentView, PolicyChanged, RequestSettings, Router
from tests.support.policies import PolicyBuilder
from tests.support.recording_server import Fault, RecordingServer

SESSIONS = int(os.environ.get("ONBOX_LEAK_SESSIONS", "500"))
LABELS = ("public", "internal", "restricted")
RANK = {name: i for i, name in enumerate(LABELS)}
FOLDERS = ("public", "internal", "restricted", "shared")
OWNERS = {"@acme/docs-team": "public", "@acme/platform": "internal", "@acme/payments": "restricted"}
CLEARANCE = {"cloud": "public", "corp": "internal"}


def leak_policy(variant: int, base: str, secrets: str, fim: bool, cloud: str, corp: str) -> str:
    """The app repo carries ``base``; owners and content raise it; public may go to the
    cloud then corp, internal to corp (FIM on corp as ``fim`` says)."""
    owners = "\n".join(f'"{team}" = "{label}"' for team, label in OWNERS.items())
    return (
        PolicyBuilder(
            f"leak-{variant}",
            extra=f'[owners]\n{owners}\n\n[content]\nsecrets = "{secrets}"\npii = "{secrets}"',
        )
        .repo("github.com/acme/app", base)
        .destination(
            "corp",
            kind="openai",
            base_url=f"{corp}/v1",
            model="coder",
            clearance="internal",
            timeout=5.0,
            fim=fim,
        )
        .destination(
            "cloud",
            kind="anthropic",
            base_url=cloud,
            model="claude-haiku-4-5",
            clearance="public",
            timeout=5.0,
        )
        .route("public", "cloud", "corp")
        .route("internal", "corp")
        .toml()
    )


#: (base label of the repo, label of content secrets, FIM on corp)
VARIANTS = (
    ("public", "internal", True),
    ("internal", "internal", False),
    ("public", "restricted", False),
    ("internal", "restricted", True),
)

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
SECRETS = st.one_of(
    st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=16, max_size=16).map(
        lambda s: "AKIA" + s
    ),
    st.text(_ALNUM, min_size=36, max_size=36).map(lambda s: "ghp_" + s),
    st.text(_ALNUM, min_size=24, max_size=24).map(lambda s: "sk_live_" + s),
)
CODE_LINES = st.sampled_from(
    [
        "def total(xs):\n",
        "    return sum(xs)\n",
        "import os\n",
        "x = compute(1, 2)\n",
        "class Invoice:\n",
        "    pass\n",
        "# TODO: tidy this up\n",
        "values = [1, 2, 3]\n",
        "\n",
    ]
)
FAULTS = st.sampled_from([Fault.STATUS_500, Fault.RATE_LIMITED, Fault.INVALID_JSON, Fault.DROP])


class OnBox:
    """The on-box model stand-in: instant, and it never leaves the machine."""

    name, kind, clearance = "on-box", "llama-cpp", "restricted"

    def complete(self, request: CompletionRequest, cancel: CancelToken) -> Completion:
        if cancel.cancelled:
            raise Cancelled("cancelled")
        return Completion(text="pass", model="on-box")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "endpoint": None, "model": "on-box"}


class FailingJournal:
    """The real journal, with a switch that makes it fail like a full disk."""

    def __init__(self, directory: Path, keys: Path) -> None:
        self.real = open_journal(directory / "journal", device_key_dir=keys, commit_interval=60)
        self.failing = False

    def append(self, kind: str, body: Mapping[str, Any], *, durable: bool = False) -> Any:
        if self.failing:
            raise JournalError("injected: no space left on device")
        return self.real.append(kind, body, durable=durable)


class World:
    """What every session shares: the servers, a git repository, the destinations."""

    def __init__(self, root: Path, journals: Path) -> None:
        self.root = root
        # Journals live on a RAM disk when there is one: the leak test checks what is
        # journalled, not durability (the journal's own crash tests do), and a few
        # thousand fsyncs would dominate its run time.
        self.journals = journals
        self.keys = journals / "device-keys"  # one device key for every session
        self.cloud = RecordingServer()
        self.corp = RecordingServer()
        self.policies = {
            variant: parse_policy(
                leak_policy(i, *variant, cloud=self.cloud.url, corp=self.corp.url).encode(),
                f"leak-{i}.toml",
            )
            for i, variant in enumerate(VARIANTS)
        }
        self.repo = root / "repo"
        self.repo.mkdir()
        git = ["git", "-C", str(self.repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
        subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
        subprocess.run(
            [*git, "remote", "add", "origin", "https://github.com/acme/app.git"], check=True
        )
        (self.repo / "README.md").write_text("app\n")
        subprocess.run([*git, "add", "README.md"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
        # Every policy variant configures the same destinations; FIM differs per variant,
        # so build one set per variant.
        self.destinations = {v: build_destinations(p, OnBox()) for v, p in self.policies.items()}
        self.sessions = 0
        self.requests = 0
        self.egress = 0
        self.received = 0

    def close(self) -> None:
        for dests in self.destinations.values():
            for dest in dests.values():
                if isinstance(dest, RemoteDestination):
                    dest.close()
        self.cloud.close()
        self.corp.close()


class Doc:
    """An open document and the canary token minted for its current model label."""

    def __init__(self, folder: str, name: str, lines: list[str]) -> None:
        self.folder = folder
        self.name = name
        self.lines = lines
        self.version = 1
        self.label = ""
        self.secrets: list[str] = []

    @property
    def rel(self) -> str:
        return f"{self.folder}/{self.name}"

    @property
    def text(self) -> str:
        return "".join(self.lines)


class LeakSession(RuleBasedStateMachine):
    """One editor session; hypothesis runs hundreds of them."""

    world: World

    def __init__(self) -> None:
        super().__init__()
        world = self.world
        world.sessions += 1
        for srv in (world.cloud, world.corp):
            srv.clear()
            srv.set_default(Fault.OK)
        for folder in FOLDERS:
            shutil.rmtree(world.repo / folder, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="leak-", dir=world.journals))
        self.variant = VARIANTS[0]
        self.attrs = {
            "public": "public",
            "internal": "internal",
            "restricted": "restricted",
            "shared": "public",
        }
        self.owners: dict[str, str | None] = dict.fromkeys(FOLDERS)
        self._write_repo_files()
        self.classifier = Classifier(world.policies[self.variant])
        self.labels = LabelAuthority(self.classifier)
        # What the editor holds now: the gate labels that, not a queued snapshot.
        self.labels.documents = self._open_document
        self.remote = "app"  # origin: "app" (the policy's repo), "other", or "both" URLs
        self._set_remote("app")
        self.queued: list[tuple[Doc, DocumentView, list[DocumentView], Router]] = []
        self.now = 0.0
        self.breaker = CircuitBreaker(cooldown=5, clock=lambda: self.now)
        self.journal = FailingJournal(self.tmp, world.keys)
        self.router = self._router()
        self.docs: list[Doc] = []
        self.tokens: dict[str, str] = {}  # token -> label it was minted for
        self.token_doc: dict[str, Doc] = {}  # token -> the document it was minted in
        self.secrets: set[str] = set()
        self.counter = itertools.count()
        self.seen = {"cloud": 0, "corp": 0}

    # -- the oracle ------------------------------------------------------------------
    def model_label(self, doc: Doc) -> str:
        base, secrets_label, _ = self.variant
        # A repo the policy does not know gets the default (restricted); two origin URLs
        # that disagree decide the highest of both.
        repo_label = base if self.remote == "app" else "restricted"
        labels = [repo_label, self.attrs[doc.folder]]
        owner = self.owners[doc.folder]
        if owner is not None:
            labels.append(OWNERS[owner])
        if doc.secrets:
            labels.append(secrets_label)
        return max(labels, key=RANK.__getitem__)

    def _mint(self, label: str) -> str:
        token = f"Q{label[0].upper()}{next(self.counter):07d}Z"
        self.tokens[token] = label
        return token

    def _relabel(self) -> None:
        """Re-mint the canary of every document whose model label changed."""
        for doc in self.docs:
            label = self.model_label(doc)
            if label == doc.label:
                continue
            doc.label = label
            doc.lines = [ln for ln in doc.lines if not ln.startswith("CANARY = ")]
            token = self._mint(label)
            self.token_doc[token] = doc
            doc.lines.insert(0, f'CANARY = "{token}"\n')
            self._save(doc)

    def effective_label(self, token: str) -> str:
        """The higher of the token's minted label and its document's label now."""
        minted = self.tokens[token]
        doc = self.token_doc.get(token)
        if doc is None or RANK[doc.label] <= RANK[minted]:
            return minted
        return doc.label

    # -- files -----------------------------------------------------------------------
    def _write_repo_files(self) -> None:
        repo = self.world.repo
        attrs = "".join(
            f"{folder}/** onbox-label={label}\n" for folder, label in self.attrs.items()
        )
        _atomic_write(repo / ".gitattributes", attrs)
        owners = "".join(f"/{folder}/ {owner}\n" for folder, owner in self.owners.items() if owner)
        _atomic_write(repo / "CODEOWNERS", owners or "# nobody\n")

    def _save(self, doc: Doc) -> None:
        doc.version += 1
        path = self.world.repo / doc.rel
        path.parent.mkdir(exist_ok=True)
        _atomic_write(path, doc.text)

    def _router(self) -> Router:
        policy = self.world.policies[self.variant]
        return Router(
            policy,
            self.world.destinations[self.variant],
            self.journal,
            breaker=self.breaker,
            labeller=self.labels,
        )

    def _open_document(self, uri: str) -> tuple[str, int | None] | None:
        for doc in self.docs:
            if (self.world.repo / doc.rel).as_uri() == uri:
                return doc.text, doc.version
        return None

    def _set_remote(self, remote: str) -> None:
        git = ["git", "-C", str(self.world.repo)]
        app, other = "https://github.com/acme/app.git", "https://github.com/acme/other.git"
        first = other if remote == "other" else app
        # Exactly the chosen URLs remain (`set-url` alone would keep any second one).
        subprocess.run([*git, "config", "--replace-all", "remote.origin.url", first], check=True)
        if remote == "both":
            subprocess.run([*git, "remote", "set-url", "--add", "origin", other], check=True)
        self.remote = remote

    def _view(self, doc: Doc, offset: int) -> DocumentView:
        uri = (self.world.repo / doc.rel).as_uri()
        decision = self.classifier.classify(uri, doc.text, doc.version, "python")
        return DocumentView(uri, doc.rel, doc.text, offset, "python", decision, doc.version)

    # -- operations ------------------------------------------------------------------
    @initialize(folders=st.lists(st.sampled_from(FOLDERS), min_size=1, max_size=3))
    def open_some(self, folders: list[str]) -> None:
        for folder in folders:
            self.docs.append(Doc(folder, f"m{next(self.counter)}.py", ["def f():\n", "    \n"]))
        self._relabel()

    @precondition(lambda self: len(self.docs) < 5)
    @rule(folder=st.sampled_from(FOLDERS), body=st.lists(CODE_LINES, max_size=4))
    def open(self, folder: str, body: list[str]) -> None:
        doc = Doc(folder, f"m{next(self.counter)}.py", list(body))
        self.docs.append(doc)
        self._relabel()
        self._request(doc, len(doc.lines), "none", stall=False)

    @precondition(lambda self: bool(self.docs))
    @rule(which=st.integers(0, 4), at=st.integers(0, 10), line=CODE_LINES)
    def edit(self, which: int, at: int, line: str) -> None:
        doc = self.docs[which % len(self.docs)]
        doc.lines.insert(min(at, len(doc.lines)), line)
        self._save(doc)
        self._request(doc, at + 1, "none", stall=False)

    @precondition(lambda self: bool(self.docs))
    @rule(which=st.integers(0, 4), at=st.integers(0, 10), secret=SECRETS)
    def paste_secret(self, which: int, at: int, secret: str) -> None:
        doc = self.docs[which % len(self.docs)]
        doc.lines.insert(min(at, len(doc.lines)), f'API_KEY = "{secret}"\n')
        doc.secrets.append(secret)
        self.secrets.add(secret)
        self._save(doc)
        self._relabel()
        self._request(doc, at + 1, "none", stall=False)

    @precondition(lambda self: bool(self.docs))
    @rule(which=st.integers(0, 4))
    def delete_line(self, which: int) -> None:
        doc = self.docs[which % len(self.docs)]
        removable = [i for i, ln in enumerate(doc.lines) if not ln.startswith("CANARY = ")]
        if removable:
            doc.lines.pop(removable[-1])
            doc.secrets = [s for s in doc.secrets if s in doc.text]
            self._save(doc)
            self._relabel()

    @precondition(lambda self: bool(self.docs))
    @rule(which=st.integers(0, 4), folder=st.sampled_from(FOLDERS))
    def rename(self, which: int, folder: str) -> None:
        doc = self.docs[which % len(self.docs)]
        (self.world.repo / doc.rel).unlink(missing_ok=True)
        doc.folder = folder
        doc.version = 0
        self._save(doc)
        self._relabel()
        self._request(doc, len(doc.lines), "none", stall=False)

    @precondition(lambda self: bool(self.docs))
    @rule(which=st.integers(0, 4))
    def close(self, which: int) -> None:
        closed = self.docs.pop(which % len(self.docs))
        # The server cancels a closed document's request (didClose); its context stays.
        self.queued = [q for q in self.queued if q[0] is not closed]

    @rule(folder=st.sampled_from(FOLDERS), label=st.sampled_from(LABELS))
    def change_gitattributes(self, folder: str, label: str) -> None:
        self.attrs[folder] = label
        self._write_repo_files()
        self._relabel()

    @rule(folder=st.sampled_from(FOLDERS), owner=st.sampled_from([None, *OWNERS]))
    def change_codeowners(self, folder: str, owner: str | None) -> None:
        self.owners[folder] = owner
        self._write_repo_files()
        self._relabel()

    @rule(variant=st.sampled_from(VARIANTS))
    def change_policy(self, variant: tuple[str, str, str]) -> None:
        self.variant = variant
        with self.labels.swap(self.world.policies[variant]):
            self.router = self._router()
        self._relabel()

    @rule(remote=st.sampled_from(["app", "other", "both"]))
    def change_remote(self, remote: str) -> None:
        self._set_remote(remote)
        self._relabel()

    @rule()
    def settings_change(self) -> None:
        # What the server does on didChangeConfiguration / a watched file / a save.
        self.labels.invalidate("settings changed")

    @precondition(lambda self: bool(self.docs) and len(self.queued) < 4)
    @rule(which=st.integers(0, 4), line=st.integers(0, 10))
    def queue(self, which: int, line: int) -> None:
        """A request waits behind a slow one with what was true when it was made."""
        doc = self.docs[which % len(self.docs)]
        offset = sum(len(ln) for ln in doc.lines[: min(line, len(doc.lines))])
        others = [self._view(d, 0) for d in self.docs if d is not doc]
        self.queued.append((doc, self._view(doc, offset), others, self.router))

    @precondition(lambda self: bool(self.queued))
    @rule()
    def run_queued(self) -> None:
        """The queue drains, after whatever happened meanwhile."""
        while self.queued:
            _doc, view, others, router = self.queued.pop(0)
            self.world.requests += 1
            settings = RequestSettings(max_tokens=8)
            try:
                try:
                    routed = router.complete(view, others, settings, CancelToken())
                except PolicyChanged:
                    # What the pipeline does: route again with the router in force.
                    routed = self.router.complete(view, others, settings, CancelToken())
            except Cancelled:
                continue  # the document changed while the request waited: nothing is sent
            if routed.egress_seq is not None:
                self.world.egress += 1
            # What reached a server is checked by the invariant, token by token.

    @rule(server=st.sampled_from(["cloud", "corp"]), fault=FAULTS)
    def destination_fails(self, server: str, fault: Fault) -> None:
        getattr(self.world, server).push(
            fault, retry_after=3 if fault is Fault.RATE_LIMITED else None
        )

    @rule(seconds=st.sampled_from([1.0, 6.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(failing=st.booleans())
    def journal_health(self, failing: bool) -> None:
        self.journal.failing = failing

    @precondition(lambda self: bool(self.docs))
    @rule(
        which=st.integers(0, 4),
        line=st.integers(0, 10),
        cancel=st.sampled_from(["none", "before", "mid"]),
        stall=st.booleans(),
    )
    def complete(self, which: int, line: int, cancel: str, stall: bool) -> None:
        self._request(self.docs[which % len(self.docs)], line, cancel, stall=stall)

    def _request(self, doc: Doc, line: int, cancel: str, *, stall: bool) -> None:
        offset = sum(len(ln) for ln in doc.lines[: min(line, len(doc.lines))])
        view = self._view(doc, offset)
        others = [self._view(d, 0) for d in self.docs if d is not doc]
        token = CancelToken()
        settings = RequestSettings(max_tokens=8)
        if cancel == "before":
            token.cancel()
        elif cancel == "mid":
            settings = RequestSettings(max_tokens=8, on_delta=lambda _t: token.cancel("superseded"))
            if stall:
                for srv in (self.world.cloud, self.world.corp):
                    srv.push(Fault.STALL)
        self.world.requests += 1
        try:
            routed = self.router.complete(view, others, settings, token)
        except Cancelled:
            assert cancel != "none"
        else:
            if routed.egress_seq is not None:
                self.world.egress += 1
            assert RANK[CLEARANCE.get(routed.destination, "restricted")] >= RANK[doc.label]
        finally:
            if cancel == "mid" and stall:
                for srv in (self.world.cloud, self.world.corp):
                    srv.clear_script()

    # -- what must hold ----------------------------------------------------------------
    @invariant()
    def nothing_above_clearance_and_no_secret_left(self) -> None:
        for name in ("cloud", "corp"):
            requests = getattr(self.world, name).requests
            clearance = RANK[CLEARANCE[name]]
            for recorded in requests[self.seen[name] :]:
                body = recorded.body.decode()
                for token in self.tokens:
                    label = self.effective_label(token)
                    assert not (RANK[label] > clearance and token in body), (
                        f"{label} canary {token} reached {name} (clearance {CLEARANCE[name]})"
                    )
                for secret in self.secrets:
                    assert secret not in body, f"secret {secret[:6]}… reached {name}"
            self.world.received += len(requests) - self.seen[name]
            self.seen[name] = len(requests)

    def teardown(self) -> None:
        self.journal.real.close()
        egress = [
            e["body"] for e in iter_entries(self.tmp / "journal") if e.get("kind") == "egress"
        ]
        journalled = {(b["destination"], b["promptSha256"]) for b in egress}
        for name in ("cloud", "corp"):
            for recorded in getattr(self.world, name).requests:
                assert (name, recorded.sha256) in journalled, (
                    f"a request to {name} has no journal entry"
                )
        shutil.rmtree(self.tmp, ignore_errors=True)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    root = Path(tempfile.mkdtemp(prefix="onbox-leak-"))
    shm = Path("/dev/shm")
    ram = shm.is_dir() and os.access(shm, os.W_OK)
    journals = Path(tempfile.mkdtemp(prefix="onbox-leak-", dir=shm)) if ram else root / "journals"
    journals.mkdir(exist_ok=True)
    built = World(root, journals)
    try:
        yield built
    finally:
        built.close()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(journals, ignore_errors=True)


def test_nothing_sensitive_leaves(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    LeakSession.world = world
    run_state_machine_as_test(  # type: ignore[no-untyped-call]
        LeakSession,
        settings=settings(
            max_examples=SESSIONS,
            stateful_step_count=12,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    with capsys.disabled():
        print(
            f"\nleak test: {world.sessions} generated sessions, {world.requests} completion "
            f"requests, {world.egress} served by a remote destination, {world.received} requests "
            "received by the recording cloud (each with its journal entry)"
        )
    assert world.sessions >= SESSIONS
    assert world.egress > 0  # the cloud path was exercised, so the assertions had work to do
