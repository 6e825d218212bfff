"""The "Contact sync" pages: a FastAPI app the Airflow plugin mounts at ``/contact-sync``.

Pages (server-rendered HTML, see :mod:`contact_sync.ui.render`):

``GET /``                       status: outcomes in the last 24 h and 7 days, the latest
                                reconciliation, the relay's backlog
``GET /errors``                 contacts whose latest outcome is ``rejected``, with Re-sync buttons
``POST /resync``                trigger ``dynamics_contact_to_marketo`` for one contact or all
``GET /history?id=``            every outcome of a contact id (GUID) or a lead id (number)
``GET /runs/{dag_id}/{run_id}`` the contacts of one run (the tab on each DAG run)

Access: Airflow does not guard plugin apps, so every request resolves the user from the JWT the
way Airflow's own routes do (``Authorization: Bearer`` first, else the UI's ``_token`` cookie;
:func:`airflow.api_fastapi.core_api.security.resolve_user_from_token`) and asks Airflow's auth
manager: reading both DAGs' runs to see anything, triggering runs of
``dynamics_contact_to_marketo`` to re-sync. A Re-sync is a call to Airflow's public REST API
(``POST /api/v2/dags/{dag_id}/dagRuns``) on this API server, with the user's own token, so
Airflow checks, validates and audits it as that user.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from contact_sync.errors import ContactSyncError, redact
from contact_sync.events import normalize_guid
from contact_sync.ledger import LEDGER_CONN_ID, Ledger
from contact_sync.models import MAX_RECORDS_PER_CALL
from contact_sync.ui import render
from contact_sync.ui.render import Links, banner, esc

__all__ = ["REALTIME_DAG_ID", "RECONCILIATION_DAG_ID", "create_app"]

log = logging.getLogger(__name__)

REALTIME_DAG_ID = "dynamics_contact_to_marketo"
RECONCILIATION_DAG_ID = "dynamics_marketo_reconciliation"
SYNC_DAG_IDS = (REALTIME_DAG_ID, RECONCILIATION_DAG_ID)
RELAY_URL_ENV = "CONTACT_SYNC_RELAY_URL"
# The relay answers /healthz from its local spool in milliseconds; a page must not hang on it.
_RELAY_TIMEOUT = httpx.Timeout(3.0, connect=2.0)
_TRIGGER_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
_JWT_COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class _SignedOut(Exception):
    """No valid JWT on the request."""


class _Forbidden(Exception):
    """The user may not do this."""


# One Ledger (engine and pool) per connection URL, for the life of the API server.
_ledgers: dict[str, Ledger] = {}


def _ledger() -> Ledger:
    fresh = Ledger.from_connection(LEDGER_CONN_ID)
    key = str(fresh.url)
    if key not in _ledgers:
        _ledgers[key] = fresh
    return _ledgers[key]


def create_app() -> FastAPI:
    """The app; Airflow mounts it (``fastapi_apps`` of :class:`ContactSyncPlugin`)."""
    app = FastAPI(title="Contact sync", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(_SignedOut)
    async def signed_out(request: Request, error: _SignedOut) -> Response:
        if request.method != "GET":
            return HTMLResponse("Not signed in.", status_code=401)
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(_airflow_root(request) + login, status_code=303)

    @app.exception_handler(_Forbidden)
    async def forbidden(request: Request, error: _Forbidden) -> Response:
        body = banner("error", esc(str(error)))
        return HTMLResponse(_page(request, "Not allowed", body, tabs=False), status_code=403)

    @app.get("/", response_class=HTMLResponse)
    async def status_page(request: Request) -> Response:
        await _reader(request)
        return await _in_thread(_status, request)

    @app.get("/errors", response_class=HTMLResponse)
    async def errors_page(request: Request) -> Response:
        user = await _reader(request)
        may_resync = _may_trigger(user)
        return await _in_thread(_errors, request, may_resync)

    @app.post("/resync")
    async def resync(
        request: Request,
        contact_id: str | None = Form(default=None),
        everyone: str | None = Form(default=None, alias="all"),
    ) -> Response:
        user = await _reader(request)
        _same_origin(request)
        if not _may_trigger(user):
            raise _Forbidden(f"You may not trigger {REALTIME_DAG_ID}, so you cannot re-sync.")
        return await _in_thread(_resync, request, contact_id, everyone is not None)

    @app.get("/history", response_class=HTMLResponse)
    async def history_page(request: Request, id: str = "") -> Response:
        await _reader(request)
        return await _in_thread(_history, request, id.strip())

    @app.get("/runs/{dag_id}/{run_id:path}", response_class=HTMLResponse)
    async def run_page(request: Request, dag_id: str, run_id: str) -> Response:
        await _reader(request)
        return await _in_thread(_run, request, dag_id, run_id)

    return app


# -- access ------------------------------------------------------------------------------------


async def _reader(request: Request) -> Any:
    """The signed-in user, who must be allowed to read the runs of both sync DAGs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import resolve_user_from_token
    from fastapi import HTTPException

    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(_JWT_COOKIE)
    try:
        user = await resolve_user_from_token(token)
    except HTTPException:
        raise _SignedOut() from None
    if not all(_authorized(user, "GET", dag_id, DagAccessEntity.RUN) for dag_id in SYNC_DAG_IDS):
        raise _Forbidden("You may not read the runs of the contact sync DAGs.")
    return user


def _may_trigger(user: Any) -> bool:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity

    # What Airflow's own trigger route requires (POST on the DAG's runs).
    return _authorized(user, "POST", REALTIME_DAG_ID, DagAccessEntity.RUN)


def _authorized(user: Any, method: str, dag_id: str, entity: Any) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return get_auth_manager().is_authorized_dag(
        method=method,  # type: ignore[arg-type]
        access_entity=entity,
        details=DagDetails(id=dag_id),
        user=user,
    )


def _same_origin(request: Request) -> None:
    # The cookie is SameSite=Lax already; refusing a foreign Origin on the one form that changes
    # something closes the remaining cross-site request forgery gap for browsers.
    origin = request.headers.get("origin")
    if origin and httpx.URL(origin).netloc.decode() != request.headers.get("host"):
        raise _Forbidden("Re-sync is only accepted from this Airflow's own pages.")


# -- pages (run in a worker thread: the ledger's SQLAlchemy calls block) ----------------------


async def _in_thread(function: Any, *args: Any) -> Response:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)


def _links(request: Request) -> Links:
    return Links(
        base=request.scope.get("root_path", "").rstrip("/"), airflow=_airflow_root(request)
    )


def _airflow_root(request: Request) -> str:
    return str(request.scope.get("app_root_path", "")).rstrip("/")


def _page(request: Request, title: str, body: str, **kwargs: Any) -> str:
    return render.page(title, body, links=_links(request), **kwargs)


def _ledger_down(request: Request, error: ContactSyncError, active: str) -> HTMLResponse:
    body = banner(
        "error",
        "<b>The sync ledger is not available.</b> "
        f"{esc(error)}<br>Check the Airflow connection <code>{LEDGER_CONN_ID}</code>.",
    )
    return HTMLResponse(_page(request, "Ledger unavailable", body, active=active), status_code=503)


def _status(request: Request) -> Response:
    links = _links(request)
    now = datetime.now(UTC)
    relay, relay_error = _relay_health()
    try:
        ledger = _ledger()
        day = ledger.outcome_counts(now - timedelta(hours=24))
        week = ledger.outcome_counts(now - timedelta(days=7))
        latest = ledger.latest_run("reconciliation")
        open_errors = len(ledger.open_rejections())
    except ContactSyncError as error:
        return _ledger_down(request, error, "status")
    errors_note = (
        banner(
            "error",
            f"<b>{open_errors} contact(s)</b> are not in Marketo: their latest sync was rejected. "
            f'<a href="{esc(links.page("errors"))}">See the errors →</a>',
        )
        if open_errors
        else banner("ok", "No contact is waiting on a rejection: every latest sync went through.")
    )
    reconciliation = (
        render.run_summary(latest, links)
        if latest
        else '<p class="muted">No reconciliation has been recorded yet.</p>'
    )
    body = (
        errors_note
        + '<div class="cards">'
        + '<div class="card"><h2>Contact outcomes</h2>'
        + render.counts_table([("last 24 h", day), ("last 7 days", week)])
        + '<p class="muted small">Real runs only; dry runs are not counted.</p></div>'
        + f'<div class="card"><h2>Latest nightly reconciliation</h2>{reconciliation}</div>'
        + f'<div class="card"><h2>Webhook relay</h2>{render.relay_card(relay, relay_error)}</div>'
        + "</div>"
    )
    return HTMLResponse(_page(request, "Status", body, active="status", open_errors=open_errors))


def _errors(request: Request, may_resync: bool) -> Response:
    links = _links(request)
    try:
        rejected = _ledger().open_rejections()
    except ContactSyncError as error:
        return _ledger_down(request, error, "errors")
    notes = []
    triggered = request.query_params.getlist("triggered")
    if triggered:
        runs = ", ".join(
            f'<a target="_top" href="{esc(links.run(REALTIME_DAG_ID, run))}">{esc(run)}</a>'
            for run in triggered
        )
        count = request.query_params.get("contacts", "?")
        notes.append(
            banner(
                "ok",
                f"Re-sync started for {esc(count)} contact(s): run {runs} of "
                f"<code>{REALTIME_DAG_ID}</code>. "
                "A contact leaves this list once that run syncs it.",
            )
        )
    if error := request.query_params.get("error"):
        notes.append(banner("error", f"Re-sync failed: {esc(error)}"))
    if not rejected:
        body = "".join(notes) + banner(
            "ok", "No rejected contacts: every contact's latest sync succeeded."
        )
        return HTMLResponse(_page(request, "Errors", body, active="errors", open_errors=0))
    if may_resync:
        everyone = (
            f'<form class="inline" method="post" action="{esc(links.page("resync"))}">'
            '<input type="hidden" name="all" value="1">'
            f'<button class="primary" type="submit">Re-sync all {len(rejected)}</button></form>'
        )
    else:
        everyone = (
            '<span class="muted small">You may view, not re-sync (no trigger permission).</span>'
        )
    body = (
        "".join(notes)
        + '<div class="toolbar"><div>'
        + f"<b>{len(rejected)} contact(s)</b> whose latest sync was <b>rejected</b> "
        + "(not sent to Marketo). Fix the record in Dynamics 365, then re-sync.</div>"
        + f"{everyone}</div>"
        + render.entries_table(rejected, links, resync=links.page("resync") if may_resync else None)
    )
    return HTMLResponse(_page(request, "Errors", body, active="errors", open_errors=len(rejected)))


def _resync(request: Request, contact_id: str | None, everyone: bool) -> Response:
    links = _links(request)
    try:
        if everyone:
            contact_ids = sorted({entry.contact_id for entry in _ledger().open_rejections()})
        elif contact_id:
            contact_ids = [normalize_guid(contact_id, what="contact id")]
        else:
            contact_ids = []
    except (ContactSyncError, ValueError) as error:
        return _back_to_errors(links, error=str(error))
    if not contact_ids:
        return _back_to_errors(links, error="no contact to re-sync")
    run_ids = []
    try:
        for start in range(0, len(contact_ids), MAX_RECORDS_PER_CALL):
            chunk = contact_ids[start : start + MAX_RECORDS_PER_CALL]
            run_ids.append(_trigger(request, {"contact_ids": chunk}))
    except RuntimeError as error:
        return _back_to_errors(links, error=str(error), triggered=run_ids)
    log.info("re-sync: %d contact(s) in run(s) %s", len(contact_ids), run_ids)
    return _back_to_errors(links, triggered=run_ids, contacts=len(contact_ids))


def _back_to_errors(links: Links, **query: Any) -> RedirectResponse:
    params = urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
    return RedirectResponse(
        links.page("errors") + (f"?{params}" if params else ""), status_code=303
    )


def _trigger(request: Request, conf: dict[str, Any]) -> str:
    """Trigger the real-time DAG through this API server's public REST API, as the user."""
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(_JWT_COOKIE)
    # This very server, on the socket the request came in on: no URL to configure, no proxy.
    host, port = request.scope["server"]
    host = f"[{host}]" if ":" in host else host
    url = f"http://{host}:{port}{_airflow_root(request)}/api/v2/dags/{REALTIME_DAG_ID}/dagRuns"
    headers = {"Authorization": f"Bearer {token}"}
    if referer := request.headers.get("referer"):
        headers["Referer"] = referer  # Airflow records a run triggered with a referer as "UI"
    try:
        response = httpx.post(
            url,
            json={"logical_date": None, "conf": conf},
            headers=headers,
            timeout=_TRIGGER_TIMEOUT,
        )
    except httpx.HTTPError as error:
        raise RuntimeError(f"Airflow's API did not answer: {type(error).__name__}") from None
    if response.is_error:
        raise RuntimeError(f"Airflow answered {response.status_code}: {redact(response.text)}")
    return response.json()["dag_run_id"]


def _history(request: Request, query: str) -> Response:
    links = _links(request)
    form = (
        f'<form method="get" action="{esc(links.page("history"))}" class="card">'
        '<label for="id"><b>Contact id or lead id</b></label><br>'
        f'<input type="search" id="id" name="id" value="{esc(query)}" '
        'placeholder="Dynamics contact id (GUID) or Marketo lead id (number)" autofocus> '
        '<button class="primary" type="submit">Search</button></form>'
    )
    if not query:
        return HTMLResponse(_page(request, "History", form, active="history"))
    contact_id = lead_id = None
    if query.isdigit() and len(query) <= 18:
        lead_id = int(query)
        what = f"lead id <code>{esc(lead_id)}</code>"
    else:
        try:
            contact_id = normalize_guid(query, what="contact id")
        except ValueError:
            message = (
                f"“{esc(query[:80])}” is neither a Dynamics contact id (a GUID such as "
                "<code>5bd0dc04-1111-4aaa-8bbb-000000000001</code>) nor a Marketo lead id "
                "(a number). Names and emails are not searchable here."
            )
            return HTMLResponse(
                _page(request, "History", form + banner("error", message), active="history"),
                status_code=400,
            )
        what = f"contact id <code>{esc(contact_id)}</code>"
    try:
        entries = _ledger().history(contact_id=contact_id, lead_id=lead_id)
    except ContactSyncError as error:
        return _ledger_down(request, error, "history")
    if not entries:
        result = banner(
            "info", f"No sync of {what} is recorded (the ledger keeps 30 days by default)."
        )
    else:
        result = f"<p>{len(entries)} sync(s) of {what}, newest first.</p>" + render.entries_table(
            entries, links, show_contact=lead_id is not None
        )
    return HTMLResponse(_page(request, "History", form + result, active="history"))


def _run(request: Request, dag_id: str, run_id: str) -> Response:
    links = _links(request)
    try:
        ledger = _ledger()
        summary = ledger.run_summary(dag_id, run_id)
        entries = ledger.run_entries(dag_id, run_id)
    except ContactSyncError as error:
        return _ledger_down(request, error, "")
    heading = (
        f'<h2>Contacts of run <a target="_top" href="{esc(links.run(dag_id, run_id))}">'
        f'<span class="id">{esc(run_id)}</span></a> <span class="muted">({esc(dag_id)})</span></h2>'
    )
    if summary is None:
        note = (
            "This DAG does not sync contacts."
            if dag_id not in SYNC_DAG_IDS
            else "Nothing recorded yet: the run's report task writes the ledger when it runs."
        )
        body = heading + banner("info", esc(note))
    else:
        counts = ", ".join(f"{n} {esc(o)}" for o, n in render.ordered(summary.counts))
        dry = " <b>Dry run</b>: nothing was written to Marketo." if summary.dry_run else ""
        body = (
            heading
            + f"<p>{summary.total} contact(s): {counts or 'none'} · "
            + f"source {esc(summary.source)}.{dry}</p>"
            + render.entries_table(entries, links, show_run=False)
        )
    return HTMLResponse(_page(request, f"Run {run_id}", body, active=None))


def _relay_health() -> tuple[dict[str, Any] | None, str | None]:
    base = os.environ.get(RELAY_URL_ENV, "").strip()
    if not base:
        return None, None
    try:
        # The relay answers 503 with the same JSON when its backlog is stale: show it either way.
        response = httpx.get(f"{base.rstrip('/')}/healthz", timeout=_RELAY_TIMEOUT)
        return response.json(), None
    except (httpx.HTTPError, ValueError) as error:
        return None, f"{type(error).__name__} from {quote(base, safe=':/')}"
