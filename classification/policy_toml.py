"""Parse and fully validate a policy TOML document into a :class:`Policy`.

Every problem raises :class:`~onbox.classification.policy_model.PolicyError` naming the
file, the line and the dotted key, e.g. ``policy.toml:14: [routes.internal] destination
'cloud' has clearance 'public', below 'internal'``. The line is found by scanning the
source text for the key (tomllib does not report positions).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, NoReturn

from onbox.classification.labels import Label, LabelScale, UnknownLabelError
from onbox.classification.patterns import PatternError, compile_safe_regex
from onbox.classification.policy_model import (
    DESTINATION_KINDS,
    ON_BOX,
    AllowRule,
    ContentConfig,
    DestinationConfig,
    DestinationCost,
    Detector,
    Policy,
    PolicyError,
    RepoRule,
)

logger = logging.getLogger(__name__)

_TOP_KEYS = {"policy", "repos", "tags", "owners", "content", "detectors", "destinations"}
_TOP_KEYS |= {"routes", "audit", "allowlist"}
_POLICY_KEYS = {"id", "labels", "default_label", "security_team_key", "expires", "description"}
_POLICY_KEYS |= {"ignored_label"}
_REPO_KEYS = {"match", "tags", "label", "root_commits"}
_ALLOW_KEYS = {"detector", "path", "sha256", "reason", "expires"}
_COMMIT = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
_CONTENT_KEYS = {"secrets", "pii", "entropy", "entropy_threshold", "entropy_min_length"}
_CONTENT_KEYS |= {"bulk_emails", "markers"}
_DETECTOR_KEYS = {"name", "kind", "language", "query", "pattern", "label", "ignore_case"}
_DEST_KEYS = {"kind", "clearance", "base_url", "model", "api_key_env", "api_key_keyring"}
_DEST_KEYS |= {"timeout", "fim", "api_version", "headers", "ca_bundle", "proxy", "max_tokens"}
_DEST_KEYS |= {"allow_plain_http", "region", "profile", "project", "location", "publisher", "cost"}
_DEST_KEYS |= {"stream"}
_COST_NUMBERS = {"input_per_mtok", "output_per_mtok", "hardware_cost", "lifetime_years"}
_COST_NUMBERS |= {"power_watts", "electricity_per_kwh", "utilisation"}
_COST_NUMBERS |= {"prefill_tokens_per_second", "decode_tokens_per_second"}
_COST_KEYS = _COST_NUMBERS | {"currency", "hardware"}
_PUBLISHERS = ("google", "anthropic", "mistralai")
_NEEDS = {"bedrock": ("region", "model"), "vertex": ("project", "location", "model")}
_AUDIT_KEYS = {
    "store_encrypted_prompts",
    "collector_url",
    "ship_minutes",
    "collector_ca",
    "journal_dir",
}
_INLINE_SECRET_KEYS = {"api_key", "apikey", "key", "token", "secret", "password", "bearer"}
_SECRET_HEADERS = {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"}
_SPACE = re.compile(r"\s")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _split_dotted(text: str) -> list[str]:
    if "." not in text:  # the common case (owners, tags): one key, maybe quoted
        return [text.strip().strip("\"'")]
    parts = re.findall(r"""\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^.]+)\s*(?:\.|$)""", text)
    return [p.strip().strip("\"'") for p in parts if p.strip()]


class KeyLocator:
    """Maps dotted key paths (``repos.1.label``) to 1-based source lines."""

    def __init__(self, text: str) -> None:
        self.lines: dict[str, int] = {}
        counters: dict[str, int] = {}
        prefix: list[str] = []
        for number, raw in enumerate(text.splitlines(), start=1):
            stripped = raw.lstrip()
            if not stripped or stripped[0] == "#":
                continue
            header = _HEADER.match(raw) if stripped[0] == "[" else None
            if header:
                names = _split_dotted(header.group(1))
                if raw.lstrip().startswith("[["):
                    base = ".".join(names)
                    index = counters.get(base, -1) + 1
                    counters[base] = index
                    names = [*names, str(index)]
                prefix = names
                self.lines.setdefault(".".join(prefix), number)
                continue
            key = _KEY.match(raw)
            if key:
                path = ".".join([*prefix, *_split_dotted(key.group(1))])
                self.lines.setdefault(path, number)

    def line(self, key: str) -> int | None:
        """Line of ``key`` or of its closest written parent."""
        parts = key.split(".")
        while parts:
            found = self.lines.get(".".join(parts))
            if found:
                return found
            parts.pop()
        return None


@dataclass
class _Ctx:
    source: str
    locator: KeyLocator
    scale: LabelScale = field(default_factory=LabelScale)

    def fail(self, key: str, message: str) -> NoReturn:
        raise PolicyError(message, file=self.source, line=self.locator.line(key), key=key)

    def table(self, value: object, key: str, allowed: set[str] | None) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {type(value).__name__}")
        if allowed is not None:
            for name in value:
                if name not in allowed:
                    self.fail(
                        f"{key}.{name}" if key else name,
                        f"unknown key {name!r}; allowed here: {', '.join(sorted(allowed))}",
                    )
        return value

    def typed(self, value: object, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            self.fail(key, f"expected {what}, got {value!r}")
        return value

    def label(self, value: object, key: str) -> Label:
        name = self.typed(value, key, str, "a label name")
        try:
            return self.scale.parse(name)
        except UnknownLabelError as exc:
            self.fail(key, str(exc))

    def str_list(self, value: object, key: str) -> tuple[str, ...]:
        items = self.typed(value, key, list, "a list of strings")
        for index, item in enumerate(items):
            self.typed(item, f"{key}.{index}", str, "a string")
        return tuple(items)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def parse_policy(data: bytes, source: str) -> Policy:
    """Parse and validate a policy document; raise :class:`PolicyError` on any problem."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(
            f"not UTF-8 text (byte {exc.start}); save the policy as UTF-8",
            file=source,
            line=None,
            key=None,
        ) from None
    ctx = _Ctx(source, KeyLocator(text))
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = int(match.group(1)) if match else len(text.splitlines()) or 1
        raise PolicyError(f"not valid TOML: {exc}", file=source, line=line, key=None) from None
    ctx.table(doc, "", _TOP_KEYS)
    head = ctx.table(doc.get("policy"), "policy", _POLICY_KEYS) if "policy" in doc else {}
    if "id" not in head:
        ctx.fail("policy.id", 'missing; every policy needs [policy] id = "..."')
    policy_id = ctx.typed(head["id"], "policy.id", str, "a string")
    if not policy_id.strip():
        ctx.fail("policy.id", "must not be empty")
    if "labels" in head:
        names = ctx.str_list(head["labels"], "policy.labels")
        try:
            ctx.scale = LabelScale(names)
        except ValueError as exc:
            ctx.fail("policy.labels", str(exc))
    default = ctx.label(head.get("default_label", ctx.scale.highest.name), "policy.default_label")
    ignored = ctx.label(head.get("ignored_label", ctx.scale.highest.name), "policy.ignored_label")
    expires = _expires(ctx, head.get("expires"))
    team_key = _team_key(ctx, head.get("security_team_key"))

    repos = tuple(_repo(ctx, item, i) for i, item in enumerate(_array(ctx, doc, "repos")))
    tags = {k: ctx.label(v, f"tags.{k}") for k, v in _tbl(ctx, doc, "tags").items()}
    folded: dict[str, str] = {}
    for tag in tags:  # tags are matched case-insensitively
        if folded.setdefault(tag.lower(), tag) != tag:
            ctx.fail(f"tags.{tag}", f"tags {folded[tag.lower()]!r} and {tag!r} differ only in case")
    owners = {k: ctx.label(v, f"owners.{k}") for k, v in _tbl(ctx, doc, "owners").items()}
    for owner in owners:
        if not (owner.startswith("@") or "@" in owner):
            ctx.fail(f"owners.{owner}", "owner must be @user, @org/team or an email address")
    content = _content(ctx, doc["content"], default) if "content" in doc else None
    detectors = tuple(
        _detector(ctx, item, i) for i, item in enumerate(_array(ctx, doc, "detectors"))
    )
    detector_names = [d.name for d in detectors]
    if len(set(detector_names)) != len(detector_names):
        ctx.fail("detectors", f"detector names must be unique: {detector_names}")
    allowlist = tuple(_allow(ctx, item, i) for i, item in enumerate(_array(ctx, doc, "allowlist")))
    destinations = _destinations(ctx, _tbl(ctx, doc, "destinations"))
    routes = _routes(ctx, _tbl(ctx, doc, "routes"), destinations)
    audit = ctx.table(doc.get("audit", {}), "audit", _AUDIT_KEYS)
    store = ctx.typed(
        audit.get("store_encrypted_prompts", False),
        "audit.store_encrypted_prompts",
        bool,
        "true or false",
    )
    if store and not team_key:
        ctx.fail(
            "audit.store_encrypted_prompts",
            "needs [policy] security_team_key (the X25519 public key prompts are encrypted to)",
        )
    collector_url, ship_minutes, collector_ca = _collector(ctx, audit)
    return Policy(
        id=policy_id,
        scale=ctx.scale,
        default_label=default,
        destinations=destinations,
        routes=routes,
        expires=expires,
        security_team_key=team_key,
        store_encrypted_prompts=store,
        collector_url=collector_url,
        ship_minutes=ship_minutes,
        collector_ca=collector_ca,
        journal_dir=_journal_dir(ctx, audit.get("journal_dir")),
        source=source,
        sha256=hashlib.sha256(data).hexdigest(),
        repos=repos,
        tags=tags,
        owners=owners,
        content=content,
        detectors=detectors,
        lines=dict(ctx.locator.lines),
        ignored_label=ignored,
        allowlist=allowlist,
    )


def _tbl(ctx: _Ctx, doc: Mapping[str, Any], key: str) -> dict[str, Any]:
    return ctx.table(doc.get(key, {}), key, None)


def _array(ctx: _Ctx, doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key, [])
    return list(ctx.typed(value, key, list, f"an array of tables ([[{key}]])"))


def _expires(ctx: _Ctx, value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            ctx.fail("policy.expires", f"{value!r} is not an ISO 8601 date-time")
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, datetime):
        ctx.fail("policy.expires", "expected a date-time such as 2027-01-01T00:00:00Z")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _team_key(ctx: _Ctx, value: object) -> str | None:
    if value is None or value == "":
        return None
    text = str(ctx.typed(value, "policy.security_team_key", str, "a base64 string"))
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        ctx.fail("policy.security_team_key", "not valid base64")
    if len(raw) != 32:
        ctx.fail("policy.security_team_key", f"an X25519 public key is 32 bytes, got {len(raw)}")
    return text


def _collector(ctx: _Ctx, audit: Mapping[str, Any]) -> tuple[str | None, float, str | None]:
    """``[audit] collector_url`` (https, or http on loopback), ``ship_minutes``, ``collector_ca``."""
    url = audit.get("collector_url")
    if url is not None:
        url = str(ctx.typed(url, "audit.collector_url", str, "a URL"))
        loopback = re.match(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", url)
        if not url.startswith("https://") and not loopback:
            ctx.fail("audit.collector_url", f"{url!r} must be https:// (http only on loopback)")
    minutes = audit.get("ship_minutes", 5)
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
        ctx.fail("audit.ship_minutes", "a positive number of minutes")
    ca = audit.get("collector_ca")
    if ca is not None:
        ca = str(ctx.typed(ca, "audit.collector_ca", str, "PEM certificates"))
        try:
            ssl.create_default_context(cadata=ca)
        except (ssl.SSLError, ValueError) as exc:
            ctx.fail("audit.collector_ca", f"not PEM CA certificates: {exc}")
    return url, float(minutes), ca


def _journal_dir(ctx: _Ctx, value: object) -> str | None:
    """``[audit] journal_dir``: kept as written; ``~`` and ``$VAR`` expand on the workstation."""
    if value is None:
        return None
    text = str(ctx.typed(value, "audit.journal_dir", str, "a directory path"))
    absolute = text.startswith(("/", "~", "$", "%", "\\\\")) or re.match(r"^[A-Za-z]:[\\/]", text)
    if not text.strip() or "\0" in text or not absolute:
        ctx.fail(
            "audit.journal_dir",
            f"{text!r} must be an absolute path; it may start with ~ (the user's home) or an "
            "environment variable ($HOME, ${XDG_STATE_HOME}, %LOCALAPPDATA%)",
        )
    return text


def _repo(ctx: _Ctx, item: object, index: int) -> RepoRule:
    key = f"repos.{index}"
    table = ctx.table(item, key, _REPO_KEYS)
    if "match" not in table:
        ctx.fail(key, "missing 'match' (a pattern like \"github.com/acme/*\")")
    match = ctx.typed(table["match"], f"{key}.match", str, "a string")
    if not match.strip() or match.count("/") < 1 or _SPACE.search(match):
        ctx.fail(f"{key}.match", f"{match!r} should look like host/owner/name (globs allowed)")
    if match.count("[") != match.count("]"):
        ctx.fail(f"{key}.match", f"{match!r} has an unclosed '[' character class")
    tags = ctx.str_list(table.get("tags", []), f"{key}.tags")
    label = ctx.label(table["label"], f"{key}.label") if "label" in table else None
    roots = ctx.str_list(table.get("root_commits", []), f"{key}.root_commits")
    for root in roots:
        if not _COMMIT.match(root.lower()):
            ctx.fail(
                f"{key}.root_commits",
                f"{root!r} is not a full commit id (git rev-list --max-parents=0 HEAD)",
            )
    if "root_commits" in table and not roots:
        ctx.fail(f"{key}.root_commits", "an empty list pins nothing; remove the key")
    rule = RepoRule(match, tags, label, ctx.locator.line(key) or 0)
    if roots:
        rule = replace(rule, root_commits=tuple(sorted({r.lower() for r in roots})))
    return rule


def _allow(ctx: _Ctx, item: object, index: int) -> AllowRule:
    key = f"allowlist.{index}"
    table = ctx.table(item, key, _ALLOW_KEYS)
    reason = ctx.typed(table.get("reason", ""), f"{key}.reason", str, "a string")
    if not reason.strip():
        ctx.fail(f"{key}.reason", 'say why these findings are accepted (reason = "...")')
    if "expires" not in table:
        ctx.fail(f"{key}.expires", "every allowlist entry needs an expiry (expires = 2027-06-30)")
    raw = table["expires"]
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw)
        except ValueError:
            ctx.fail(f"{key}.expires", f"{raw!r} is not an ISO 8601 date")
    if isinstance(raw, date) and not isinstance(raw, datetime):
        raw = datetime(raw.year, raw.month, raw.day, tzinfo=UTC)
    if not isinstance(raw, datetime):
        ctx.fail(f"{key}.expires", "expected a date such as 2027-06-30")
    expires = raw if raw.tzinfo else raw.replace(tzinfo=UTC)
    fields = {}
    for name in ("detector", "path", "sha256"):
        if name in table:
            value = ctx.typed(table[name], f"{key}.{name}", str, "a string").strip()
            if not value:
                ctx.fail(f"{key}.{name}", "must not be empty")
            fields[name] = value
    if not fields:
        ctx.fail(key, "give at least one of detector, path or sha256: an entry must say what")
    digest = fields.get("sha256")
    if digest is not None:
        digest = digest.lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            ctx.fail(f"{key}.sha256", "64 hex digits: sha256 of the matched text (UTF-8)")
    return AllowRule(
        reason=reason.strip(),
        expires=expires,
        detector=fields.get("detector"),
        path=fields.get("path"),
        sha256=digest,
        line=ctx.locator.line(key) or 0,
    )


def _content(ctx: _Ctx, value: object, default: Label) -> ContentConfig:
    table = ctx.table(value, "content", _CONTENT_KEYS)

    def optional_label(key: str) -> Label | None:
        raw = table.get(key, default.name)
        if raw is False or raw == "off":
            return None
        return ctx.label(raw, f"content.{key}")

    get: Callable[[str, Any], Any] = table.get
    threshold = ctx.typed(
        get("entropy_threshold", 4.0),
        "content.entropy_threshold",
        (int, float),
        "a number of bits per character",
    )
    if not 2.0 <= float(threshold) <= 6.0:
        ctx.fail("content.entropy_threshold", "must be between 2.0 and 6.0 bits per character")
    min_len = ctx.typed(
        get("entropy_min_length", 20), "content.entropy_min_length", int, "an integer"
    )
    bulk = ctx.typed(get("bulk_emails", 10), "content.bulk_emails", int, "an integer")
    if bulk < 1 or min_len < 8:
        ctx.fail("content", "bulk_emails must be >= 1 and entropy_min_length >= 8")
    return ContentConfig(
        secrets=optional_label("secrets"),
        pii=optional_label("pii"),
        entropy=ctx.typed(get("entropy", True), "content.entropy", bool, "true or false"),
        entropy_threshold=float(threshold),
        entropy_min_length=min_len,
        bulk_emails=bulk,
        markers=ctx.typed(get("markers", True), "content.markers", bool, "true or false"),
    )


def _detector(ctx: _Ctx, item: object, index: int) -> Detector:
    from onbox.classification.languages import (  # tree-sitter is heavy
        compile_query,
        known_languages,
        normalise_language,
    )

    key = f"detectors.{index}"
    table = ctx.table(item, key, _DETECTOR_KEYS)
    for required in ("name", "kind", "label"):
        if required not in table:
            ctx.fail(key, f"missing {required!r}")
    name = ctx.typed(table["name"], f"{key}.name", str, "a string")
    if not _NAME.match(name):
        ctx.fail(f"{key}.name", f"{name!r}: use letters, digits, '-', '_' or '.'")
    kind = ctx.typed(table["kind"], f"{key}.kind", str, "a string")
    label = ctx.label(table["label"], f"{key}.label")
    line = ctx.locator.line(key) or 0
    if kind == "regex":
        pattern = ctx.typed(table.get("pattern"), f"{key}.pattern", str, "a regex string")
        ignore = ctx.typed(table.get("ignore_case", False), f"{key}.ignore_case", bool, "a bool")
        try:
            compiled = compile_safe_regex(pattern, flags_ignorecase=ignore)
        except PatternError as exc:
            ctx.fail(f"{key}.pattern", str(exc))
        return Detector(name, kind, label, pattern=pattern, line=line, compiled=compiled)
    if kind == "tree-sitter":
        language = ctx.typed(table.get("language"), f"{key}.language", str, "a language name")
        if normalise_language(language) is None:
            ctx.fail(
                f"{key}.language",
                f"unknown language {language!r}; tree-sitter detectors "
                f"support {', '.join(known_languages())}",
            )
        query = ctx.typed(table.get("query"), f"{key}.query", str, "a tree-sitter query")
        try:
            compiled_query = compile_query(language, query)
        except ValueError as exc:
            ctx.fail(f"{key}.query", str(exc))
        return Detector(
            name, kind, label, query=query, language=language, line=line, compiled=compiled_query
        )
    ctx.fail(f"{key}.kind", f"unknown detector kind {kind!r}; use 'regex' or 'tree-sitter'")


def _destinations(ctx: _Ctx, table: dict[str, Any]) -> dict[str, DestinationConfig]:
    result: dict[str, DestinationConfig] = {}
    for name, raw in table.items():
        key = f"destinations.{name}"
        if not _NAME.match(name):
            ctx.fail(key, f"destination name {name!r}: use letters, digits, '-', '_' or '.'")
        if isinstance(raw, dict):
            for secret_key in raw:
                if secret_key.lower() in _INLINE_SECRET_KEYS:
                    ctx.fail(
                        f"{key}.{secret_key}",
                        "API keys must not be written in the policy; "
                        "use api_key_env or api_key_keyring",
                    )
        spec = ctx.table(raw, key, _DEST_KEYS)
        kind = ctx.typed(spec.get("kind"), f"{key}.kind", str, "a destination kind")
        if kind not in DESTINATION_KINDS:
            ctx.fail(f"{key}.kind", f"unknown kind {kind!r}; use {', '.join(DESTINATION_KINDS)}")
        clearance = ctx.label(spec.get("clearance"), f"{key}.clearance")
        headers = ctx.table(spec.get("headers", {}), f"{key}.headers", None)
        for header, hvalue in headers.items():
            ctx.typed(hvalue, f"{key}.headers.{header}", str, "a string")
            if header.lower() in _SECRET_HEADERS:
                ctx.fail(
                    f"{key}.headers.{header}",
                    "credentials must not be written in the "
                    "policy; use api_key_env or api_key_keyring",
                )

        def opt_str(field_name: str, spec: dict[str, Any] = spec, key: str = key) -> str | None:
            value = spec.get(field_name)
            return (
                None if value is None else ctx.typed(value, f"{key}.{field_name}", str, "a string")
            )

        timeout = ctx.typed(spec.get("timeout", 10.0), f"{key}.timeout", (int, float), "seconds")
        if timeout <= 0:
            ctx.fail(f"{key}.timeout", "must be > 0 seconds")
        max_tokens = spec.get("max_tokens")
        if max_tokens is not None and ctx.typed(max_tokens, f"{key}.max_tokens", int, "int") < 1:
            ctx.fail(f"{key}.max_tokens", "must be >= 1")
        if kind in ("openai", "anthropic") and not spec.get("base_url"):
            ctx.fail(f"{key}.base_url", f"a {kind} destination needs base_url")
        for needed in _NEEDS.get(kind, ()):
            if not spec.get(needed):
                ctx.fail(f"{key}.{needed}", f"a {kind} destination needs {needed}")
        if spec.get("publisher") is not None and spec["publisher"] not in _PUBLISHERS:
            ctx.fail(f"{key}.publisher", f"use one of {', '.join(_PUBLISHERS)}")
        if name == ON_BOX and (kind != "llama-cpp" or clearance != ctx.scale.highest):
            ctx.fail(
                key,
                f"'{ON_BOX}' is the local llama.cpp model with clearance "
                f"{ctx.scale.highest.name!r}; give other destinations another name",
            )
        result[name] = DestinationConfig(
            name=name,
            kind=kind,
            clearance=clearance,
            base_url=opt_str("base_url"),
            model=opt_str("model"),
            api_key_env=opt_str("api_key_env"),
            api_key_keyring=opt_str("api_key_keyring"),
            timeout=float(timeout),
            fim=ctx.typed(spec.get("fim", True), f"{key}.fim", bool, "true or false"),
            api_version=opt_str("api_version"),
            headers=dict(headers),
            ca_bundle=opt_str("ca_bundle"),
            proxy=opt_str("proxy"),
            max_tokens=max_tokens,
            allow_plain_http=ctx.typed(
                spec.get("allow_plain_http", False),
                f"{key}.allow_plain_http",
                bool,
                "true or false",
            ),
            region=opt_str("region"),
            profile=opt_str("profile"),
            project=opt_str("project"),
            location=opt_str("location"),
            publisher=opt_str("publisher"),
            stream=ctx.typed(spec.get("stream", True), f"{key}.stream", bool, "true or false"),
            cost=_cost(ctx, spec["cost"], f"{key}.cost") if "cost" in spec else None,
        )
    result.setdefault(ON_BOX, DestinationConfig(ON_BOX, "llama-cpp", ctx.scale.highest))
    return result


def _cost(ctx: _Ctx, raw: object, key: str) -> DestinationCost:
    table = ctx.table(raw, key, _COST_KEYS)
    numbers: dict[str, float] = {}
    for name in _COST_NUMBERS & table.keys():
        value = ctx.typed(table[name], f"{key}.{name}", (int, float), "a number")
        if value < 0:
            ctx.fail(f"{key}.{name}", "must be >= 0")
        numbers[name] = float(value)
    cost = DestinationCost(
        currency=ctx.typed(table.get("currency", "USD"), f"{key}.currency", str, "a string"),
        hardware=ctx.typed(table.get("hardware", ""), f"{key}.hardware", str, "a string"),
        **numbers,
    )
    if not 0 < cost.utilisation <= 1:
        ctx.fail(f"{key}.utilisation", "must be above 0 and at most 1 (the busy share of hours)")
    if cost.self_hosted:
        if cost.lifetime_years <= 0:
            ctx.fail(f"{key}.lifetime_years", "must be > 0")
        if cost.prefill_tokens_per_second <= 0 or cost.decode_tokens_per_second <= 0:
            ctx.fail(
                key,
                "hardware needs prefill_tokens_per_second and decode_tokens_per_second "
                "(its measured throughput) to turn hours into tokens",
            )
    return cost


def _routes(
    ctx: _Ctx, table: dict[str, Any], destinations: dict[str, DestinationConfig]
) -> dict[str, tuple[str, ...]]:
    routes: dict[str, tuple[str, ...]] = {}
    for label_name, raw in table.items():
        key = f"routes.{label_name}"
        if label_name not in ctx.scale:
            ctx.fail(key, f"unknown label {label_name!r}; labels are {list(ctx.scale.names)}")
        label = ctx.scale.parse(label_name)
        names = ctx.str_list(raw, key)
        for name in names:
            if name not in destinations:
                ctx.fail(key, f"unknown destination {name!r}; define [destinations.{name}]")
            clearance = destinations[name].clearance
            if clearance < label:
                ctx.fail(
                    key,
                    f"destination {name!r} has clearance {clearance.name!r}, below "
                    f"{label_name!r}: it may not receive {label_name} files",
                )
        if len(set(names)) != len(names):
            ctx.fail(key, "a destination is listed twice")
        routes[label_name] = names if ON_BOX in names else (*names, ON_BOX)
    for label in ctx.scale.labels():
        routes.setdefault(label.name, (ON_BOX,))
    return routes
