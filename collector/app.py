"""The collector's HTTP service: Starlette under uvicorn.

Starlette is a small, well-kept ASGI toolkit (the base of FastAPI) and uvicorn its
usual server; the collector needs only routing, a bounded request body and responses,
so nothing heavier. Database work is synchronous and runs in Starlette's thread pool.

Routes::

    POST /v1/upload      an upload (onbox.audit.upload); 200 with what was stored, or the
                         refusal: 400/401/403/409/413/422 (onbox.collector.errors), 503
    GET  /v1/entries     search: device, user, repo, path, label, destination, kind,
                         since, until, limit
    GET  /v1/devices     per-device chain status
    GET  /v1/alerts      open alerts (``?all=1``: resolved ones too)
    GET  /v1/egress      egress by label/destination/day, tokens per cloud destination
    GET  /healthz        the database answers
    GET  /               the dashboard

Uploads authenticate themselves (each is signed by its device's journal key). Reading
(search, devices, alerts, egress, dashboard) needs the read token when one is set
(``ONBOX_COLLECTOR_READ_TOKEN``): as ``Authorization: Bearer <token>``, or as the
password of HTTP Basic authentication (what a browser asks for).
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from onbox.audit.entry import parse_time
from onbox.collector.dashboard import render
from onbox.collector.errors import StoreUnavailable, UploadRejected
from onbox.collector.ingest import MAX_UPLOAD_BYTES, Enrolment, ingest
from onbox.collector.query import (
    EntryQuery,
    egress_summary,
    find_entries,
    list_alerts,
    list_devices,
)
from onbox.collector.store import Store
from onbox.collector.verifier import CHECK_WORKERS_ENV, default_workers

logger = logging.getLogger(__name__)


def create_app(
    store: Store,
    enrolment: Enrolment,
    *,
    silence: timedelta = timedelta(minutes=30),
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    read_token: str | None = None,
) -> Starlette:
    """The ASGI application over ``store``."""

    def guarded(handler: Handler) -> Handler:
        if not read_token:
            return handler

        async def check(request: Request) -> Response:
            if not _token_ok(request.headers.get("authorization", ""), read_token):
                return JSONResponse(
                    {"ok": False, "error": "the read token is required"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="onbox-collector"'},
                )
            return await handler(request)

        return check

    async def upload(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_upload_bytes:
            return _refuse(413, f"upload exceeds {max_upload_bytes} bytes; send smaller batches")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_upload_bytes:
                return _refuse(
                    413, f"upload exceeds {max_upload_bytes} bytes; send smaller batches"
                )
        try:
            result = await run_in_threadpool(ingest, store, bytes(body), enrolment)
        except UploadRejected as exc:
            return _refuse(exc.status, str(exc))
        except StoreUnavailable as exc:
            logger.error("ingest: %s", exc)
            return _refuse(503, f"{exc}; retry later", retry=True)
        return JSONResponse(result.to_json())

    async def entries(request: Request) -> Response:
        params = request.query_params
        try:
            query = EntryQuery(
                device=params.get("device"),
                user=params.get("user"),
                repo=params.get("repo"),
                path=params.get("path"),
                label=params.get("label"),
                destination=params.get("destination"),
                kind=params.get("kind"),
                since=parse_time(params["since"]) if "since" in params else None,
                until=parse_time(params["until"]) if "until" in params else None,
                limit=min(int(params.get("limit", "100")), 10_000),
                with_line=params.get("full") == "1",
            )
        except ValueError as exc:
            return _refuse(400, f"bad query: {exc}")
        return await _read(find_entries, store, query)

    async def devices(request: Request) -> Response:
        return await _read(lambda s: list_devices(s, silence=silence), store)

    async def alerts(request: Request) -> Response:
        every = request.query_params.get("all") == "1"
        return await _read(lambda s: list_alerts(s, open_only=not every, silence=silence), store)

    async def egress(request: Request) -> Response:
        return await _read(egress_summary, store)

    async def healthz(request: Request) -> Response:
        return await _read(lambda s: {"ok": bool(list_devices(s) is not None)}, store)

    async def dashboard(request: Request) -> Response:
        try:
            page = await run_in_threadpool(render, store, silence=silence)
        except StoreUnavailable as exc:
            return HTMLResponse(f"<p>database unavailable: {exc}</p>", status_code=503)
        return HTMLResponse(page)

    return Starlette(
        routes=[
            Route("/v1/upload", upload, methods=["POST"]),
            Route("/v1/entries", guarded(entries)),
            Route("/v1/devices", guarded(devices)),
            Route("/v1/alerts", guarded(alerts)),
            Route("/v1/egress", guarded(egress)),
            Route("/healthz", healthz),
            Route("/", guarded(dashboard)),
        ]
    )


Handler = Callable[[Request], Awaitable[Response]]


def _token_ok(header: str, token: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        offered = value.strip()
    elif scheme.lower() == "basic":
        try:
            offered = base64.b64decode(value.strip()).decode("utf-8").partition(":")[2]
        except (ValueError, UnicodeDecodeError):
            return False
    else:
        return False
    return hmac.compare_digest(offered.encode(), token.encode())


async def _read(function: Any, *args: Any) -> Response:
    try:
        return JSONResponse(await run_in_threadpool(function, *args))
    except StoreUnavailable as exc:
        return _refuse(503, f"{exc}; retry later", retry=True)


def _refuse(status: int, message: str, *, retry: bool = False) -> Response:
    headers = {"Retry-After": "5"} if retry else None
    return JSONResponse({"ok": False, "error": message}, status_code=status, headers=headers)


_ENV = "ONBOX_COLLECTOR_CONFIG"
READ_TOKEN_ENV = "ONBOX_COLLECTOR_READ_TOKEN"


def app_from_env() -> Starlette:
    """The app for each of several uvicorn worker processes (config in ``_ENV``)."""
    config = json.loads(os.environ[_ENV])
    return create_app(
        Store(config["db"]),
        Enrolment(frozenset(config["approved"]), bool(config["tofu"])),
        silence=timedelta(seconds=float(config["silence"])),
        read_token=os.environ.get(READ_TOKEN_ENV) or None,
    )


def serve(
    store_url: str,
    enrolment: Enrolment,
    *,
    host: str,
    port: int,
    silence: timedelta,
    workers: int = 1,
    certfile: str | None = None,
    keyfile: str | None = None,
) -> None:
    """Run the collector until interrupted; ``workers`` > 1 runs that many processes.

    One process checks a large upload's signatures on every core (worker processes,
    :mod:`onbox.collector.verifier`); ``workers`` > 1 shares the cores out among the
    processes instead. A fleet scales further with replicas on one PostgreSQL.
    """
    import uvicorn

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "ssl_certfile": certfile,
        "ssl_keyfile": keyfile,
        "log_level": "info",
        "access_log": False,
    }
    if workers <= 1:
        app = create_app(
            Store(store_url),
            enrolment,
            silence=silence,
            read_token=os.environ.get(READ_TOKEN_ENV) or None,
        )
        uvicorn.run(app, **options)
        return
    # each process checks its uploads on its share of the cores (an operator may set it)
    os.environ.setdefault(CHECK_WORKERS_ENV, str(max(1, default_workers() // workers)))
    os.environ[_ENV] = json.dumps(
        {
            "db": store_url,
            "approved": sorted(enrolment.approved),
            "tofu": enrolment.trust_on_first_use,
            "silence": silence.total_seconds(),
        }
    )
    uvicorn.run("onbox.collector.app:app_from_env", factory=True, workers=workers, **options)
