"""The classification policy as data: frozen dataclasses and :class:`PolicyError`.

Parsing and validation live in :mod:`onbox.classification.policy_toml`; the public entry
points (:func:`~onbox.classification.policy.parse_policy`, ``load_policy``,
``builtin_policy``) in :mod:`onbox.classification.policy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from onbox.classification.labels import Label, LabelScale
from onbox.classification.patterns import RegexLike

ON_BOX = "on-box"
DESTINATION_KINDS = ("llama-cpp", "openai", "anthropic", "bedrock", "vertex")


class ClassificationError(Exception):
    """Base of every error raised by :mod:`onbox.classification`."""


class PolicyError(ClassificationError):
    """A policy that cannot be used; names the file, the line and the key at fault."""

    def __init__(self, message: str, *, file: str, line: int | None, key: str | None) -> None:
        self.file = file
        self.line = line
        self.key = key
        self.reason = message
        where = f"{file}:{line if line is not None else '?'}"
        super().__init__(f"{where}: [{key or '-'}] {message}")


@dataclass(frozen=True)
class DestinationConfig:
    """One completion engine the policy allows, with the highest label it may receive."""

    name: str
    kind: str
    clearance: Label
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    api_key_keyring: str | None = None
    timeout: float = 10.0
    fim: bool = True
    api_version: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ca_bundle: str | None = None
    proxy: str | None = None
    max_tokens: int | None = None
    allow_plain_http: bool = False  # plain http:// to a host other than loopback (no API key)
    region: str | None = None  # bedrock: the AWS region (also the SigV4 scope)
    profile: str | None = None  # bedrock: the AWS profile credentials come from
    project: str | None = None  # vertex: the Google Cloud project
    location: str | None = None  # vertex: the location (us-east5, europe-west1, global)
    publisher: str | None = None  # vertex: google | anthropic | mistralai (from model if unset)
    stream: bool = True  # bedrock, vertex: ConverseStream / streamGenerateContent (else one body)
    cost: DestinationCost | None = None  # ``[destinations.NAME.cost]``: what its tokens cost


@dataclass(frozen=True)
class DestinationCost:
    """``[destinations.NAME.cost]``: prices for ``onbox journal stats --cost``.

    A cloud service sets ``input_per_mtok`` and ``output_per_mtok`` (currency per million
    tokens). Hardware (on-box or self-hosted) sets ``hardware_cost``, ``lifetime_years``,
    ``power_watts``, ``electricity_per_kwh``, ``utilisation`` and its throughput. The
    formulas are in ``docs/cost.md``.
    """

    currency: str = "USD"
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    hardware_cost: float = 0.0
    lifetime_years: float = 3.0
    power_watts: float = 0.0
    electricity_per_kwh: float = 0.0
    utilisation: float = 1.0  # share of the paid hours the hardware is busy
    prefill_tokens_per_second: float = 0.0
    decode_tokens_per_second: float = 0.0
    hardware: str = ""  # what it is, for the break-even line ("L40S")

    @property
    def self_hosted(self) -> bool:
        """Whether the price comes from hardware rather than a per-token rate."""
        return self.hardware_cost > 0 or self.power_watts > 0


@dataclass(frozen=True)
class RepoRule:
    """``[[repos]]``: repositories whose normalised remote matches ``match`` get tags/label."""

    match: str
    tags: tuple[str, ...] = ()
    label: Label | None = None
    line: int = 0
    #: the repository's root commits: a checkout named ``match`` must descend from these only
    root_commits: tuple[str, ...] = ()


@dataclass(frozen=True)
class AllowRule:
    """``[[allowlist]]``: content findings admins reviewed and accepted, until ``expires``.

    Every condition given must hold: ``detector`` (a finding type such as
    ``high-entropy-string``, a detector name, or a kind: ``secret``, ``pii``,
    ``detector``), ``path`` (a git-style glob on the repo-relative path) and ``sha256``
    (of the matched text, lower-case hex). A suppressed finding is still reported.
    """

    reason: str
    expires: datetime
    detector: str | None = None
    path: str | None = None
    sha256: str | None = None
    line: int = 0

    def applies(self, now: datetime) -> bool:
        """Whether the entry is still in force at ``now`` (timezone-aware)."""
        return now < self.expires


@dataclass(frozen=True)
class Detector:
    """``[[detectors]]``: a policy-defined content detector (regex or tree-sitter query)."""

    name: str
    kind: str  # "regex" | "tree-sitter"
    label: Label
    pattern: str = ""
    query: str = ""
    language: str | None = None
    line: int = 0
    compiled: RegexLike | Any | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ContentConfig:
    """``[content]``: labels and thresholds for the built-in detectors."""

    secrets: Label | None
    pii: Label | None
    entropy: bool = True
    entropy_threshold: float = 4.0
    entropy_min_length: int = 20
    bulk_emails: int = 10
    markers: bool = True


@dataclass(frozen=True)
class Policy:
    """A validated classification policy.

    ``serial`` is 0 for file and built-in policies; the signed-bundle layer sets it with
    :func:`dataclasses.replace`. ``lines`` maps dotted keys (``tags.docs``,
    ``owners.@acme/pay``, ``detectors.2``) to the line where they are written, for reasons.
    """

    id: str
    scale: LabelScale
    default_label: Label
    destinations: dict[str, DestinationConfig]
    routes: dict[str, tuple[str, ...]]
    serial: int = 0
    expires: datetime | None = None
    security_team_key: str | None = None
    store_encrypted_prompts: bool = False
    #: ``[audit] collector_url``: where ``onbox serve`` ships the journal (None: nowhere)
    collector_url: str | None = None
    ship_minutes: float = 5.0
    #: ``[audit] collector_ca``: PEM certificates the collector's TLS must chain to
    collector_ca: str | None = None
    #: ``[audit] journal_dir``: where the journal lives on a managed workstation, as
    #: written (``~`` and ``$VAR`` expand on the workstation); None: the default place
    journal_dir: str | None = None
    source: str = "<builtin>"
    sha256: str = ""
    repos: tuple[RepoRule, ...] = ()
    tags: dict[str, Label] = field(default_factory=dict)
    owners: dict[str, Label] = field(default_factory=dict)
    content: ContentConfig | None = None
    detectors: tuple[Detector, ...] = ()
    lines: dict[str, int] = field(default_factory=dict, compare=False)
    #: label of files git ignores and does not track (``.env``); ``None``: the highest
    ignored_label: Label | None = None
    allowlist: tuple[AllowRule, ...] = ()  # ``[[allowlist]]``: accepted content findings

    def where(self, key: str) -> str:
        """``"source:line"`` of ``key`` in the policy text (or just the source)."""
        line = self.lines.get(key)
        return f"{self.source}:{line}" if line else self.source

    def content_config(self) -> ContentConfig:
        """The ``[content]`` settings, defaulting every built-in detector to the default label."""
        if self.content is not None:
            return self.content
        return ContentConfig(secrets=self.default_label, pii=self.default_label)

    def expired(self, now: datetime) -> bool:
        """Whether ``now`` (timezone-aware) is past :attr:`expires`."""
        return self.expires is not None and now >= self.expires
