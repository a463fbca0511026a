"""The lead query API on each worker (Faust web views), answered by the key's owner.

A request for a contact whose partition another worker owns is forwarded to
that worker and its answer (status, body, Retry-After) returned as is. While
the assignment is unknown or moving (rebalance) or tables are recovering, the
answer is 503 with Retry-After, never a wrong or empty lead. A forwarded
request is never forwarded again: if the receiver does not own the lead
either, ownership is moving and the answer is 503.

One aiohttp middleware wraps every route, Faust's own included: bearer-token
check (all but /healthz and /readyz), one JSON error shape for every error
(unknown routes and methods too), no stack traces to clients, and the request
metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

import aiohttp
import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View
from yarl import URL

from leadscore.api import (
    account_body,
    account_contacts_body,
    check_account_id,
    check_at,
    check_contact_id,
    check_cooling_query,
    check_limit,
    check_list_query,
    check_token,
    cooling_body,
    history_body,
    intelligence_body,
    lead_body,
    list_body,
    served_document,
)
from leadscore.codecs.accounts import account_key, decode_account
from leadscore.codecs.leads import decode_lead
from leadscore.config import Settings
from leadscore.errors import ApiError, HistoryUnavailable
from leadscore.metrics import API_LATENCY, API_REQUESTS, exposition
from leadscore.scoring import LeadRecord, Rules
from leadscore.scoring.accounts import AccountRecord
from leadscore.scoring.ranking import RankIndex
from leadscore.stream.history import ChangeReader
from leadscore.stream.partitioning import key_partition

log = logging.getLogger("leadscore.web")

RETRY_AFTER_S = 5
FORWARD_TIMEOUT_S = 5.0
FORWARDED = "X-Leadscore-Forwarded"  # set on a forwarded request and on its answer
AT = "X-Leadscore-At"  # a list gathered from every worker: the time all of them decay to
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
HTTP_ERRORS = {
    404: ("not_found", "no such endpoint"),
    405: ("method_not_allowed", "only GET is served"),
}
Handler = Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]


def owned_partitions(app: faust.App, topic: str) -> list[int]:
    """The partitions of ``topic`` assigned to this worker."""
    return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)


def not_ready(
    app: faust.App, settings: Settings, broker_problem: Callable[[], str | None] | None = None
) -> str | None:
    """Why this worker is not ready (None when it is).

    Lead queries are answered from local state, so they leave out ``broker_problem``:
    during an outage a worker still answers what it knows, while /readyz says it is
    not processing.
    """
    if app.should_stop:
        return "the worker is stopping"
    # Faust keeps ``rebalancing`` set until table recovery after the rebalance ends.
    if app.rebalancing:
        return "the consumer group is rebalancing or tables are being recovered"
    if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]  # Faust's TableManagerT does not declare its recovery
        return "tables are being recovered from their changelogs"
    if not owned_partitions(app, settings.events_topic):
        return "no partitions of the events topic are assigned to this worker"
    return broker_problem() if broker_problem is not None else None


def error_response(error: ApiError) -> aioweb.Response:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return aioweb.json_response(error.body(), status=error.status, headers=headers)


def api_middleware(settings: Settings) -> Any:
    """The middleware every request passes through (see the module docstring)."""
    token, _ = settings.api_access()

    @aioweb.middleware
    async def middleware(request: aioweb.Request, handler: Handler) -> aioweb.StreamResponse:
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        try:
            if request.path not in OPEN_PATHS:
                check_token(token, request.headers.get("Authorization"))
            response = await handler(request)
        except ApiError as error:
            response = error_response(error)
        except aioweb.HTTPException as error:
            code, message = HTTP_ERRORS.get(error.status, (f"http_{error.status}", error.reason))
            response = error_response(ApiError(error.status, code, message))
            if "Allow" in error.headers:  # RFC 9110: a 405 says which methods are allowed
                response.headers["Allow"] = error.headers["Allow"]
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("request to %s failed", route)
            response = error_response(
                ApiError(500, "internal", "internal error; the worker's log has the details")
            )
        API_REQUESTS.labels(route, str(response.status)).inc()
        API_LATENCY.labels(route, request.get("served", "local")).observe(
            time.perf_counter() - started
        )
        return response

    return middleware


class SharedUrlReport:
    """Logs, at most once a minute, that another worker advertises this worker's URL.

    Faust routes a lead to the URL its owner advertises. Two workers with the same
    URL (a copied LEADSCORE_WEB_URL, or one host name for several containers) each
    take the other's leads for their own and would answer 404 for them.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.last = 0.0

    def report(self, partition: int) -> None:
        now = time.monotonic()
        if now - self.last < 60:
            return
        self.last = now
        log.error(
            "another worker advertises this worker's URL %s: it owns partition %s, which "
            "Faust routes here. Give each worker its own LEADSCORE_WEB_URL (or "
            "LEADSCORE_WEB_HOST); until then lead queries for its leads answer 503",
            self.url,
            partition,
        )


def _ident(url: URL) -> tuple[str, int]:
    return (url.host or "", url.port or 80)


def install_web(
    app: faust.App,
    leads: Any,
    history: ChangeReader,
    rules: Rules,
    settings: Settings,
    clock: Callable[[], int],
    broker_problem: Callable[[], str | None] | None = None,
    *,
    partitions: int,
    in_flight: Callable[[bytes], tuple[bool, LeadRecord | None]] | None = None,
    ranks: RankIndex | None = None,
    accounts: Any = None,
    accounts_in_flight: Callable[[bytes], tuple[bool, Any]] | None = None,
) -> None:
    """The API's views. ``partitions``: the events topic's partition count.

    ``in_flight``: whether the worker's batches in flight wrote a lead, and what
    they left (None: deleted), read before the table (``stream.pipeline``).
    ``ranks``: the worker's index of its partitions' leads by current score.
    ``accounts``: the accounts table (None: accounts are not scored), read after
    ``accounts_in_flight`` as leads are.
    """
    me = _ident(URL(settings.canonical_web_url()))
    shared_url = SharedUrlReport(settings.canonical_web_url())

    def owned() -> list[int]:
        return owned_partitions(app, settings.events_topic)

    def unavailable(reason: str) -> ApiError:
        return ApiError(503, "unavailable", reason, retry_after=RETRY_AFTER_S)

    def to_worker(worker: URL, request: Request, **extra: str) -> dict[str, Any]:
        """The arguments of ``request`` sent on to another worker: its URL there, the
        forwarded mark, the caller's credentials and ``extra`` headers, the timeout."""
        url = request.url.with_scheme(worker.scheme).with_host(worker.host or "")
        headers = {FORWARDED: "1", **extra}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        return {
            "url": url.with_port(worker.port),
            "headers": headers,
            "timeout": aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S),
        }

    async def forward(owner: URL, request: Request) -> Response:
        try:
            async with app.http_client.get(**to_worker(owner, request)) as answer:
                body = await answer.read()
                kept = {FORWARDED: "1"}
                if "Retry-After" in answer.headers:
                    kept["Retry-After"] = answer.headers["Retry-After"]
                if answer.charset:
                    kept["Content-Type"] = f"{answer.content_type}; charset={answer.charset}"
                return aioweb.Response(  # type: ignore[return-value]  # Faust's web views return aiohttp's responses as they are
                    body=body,
                    status=answer.status,
                    headers=kept,
                    content_type=None if answer.charset else answer.content_type,
                )
        except (aiohttp.ClientError, TimeoutError) as error:
            log.warning("forwarding to the owner failed: %s", type(error).__name__)
            raise unavailable("the worker that owns this lead did not answer") from None

    async def elsewhere(request: Request, key_id: str, what: str) -> Response | None:
        """None when this worker owns the partition of ``key_id`` (a contact or account id:
        the leads and accounts tables are co-partitioned by it); else the owner's answer
        to ``request``, forwarded. ``what``: "lead" or "account", for the messages."""
        reason = not_ready(app, settings)
        if reason is not None:
            raise unavailable(reason)
        partition = key_partition(key_id.encode("utf-8"), partitions)
        if partition in owned():
            return None
        try:
            # The owner of a leads partition owns the same accounts partition.
            owner = app.router.key_store("leads", key_id)
        except KeyError:
            raise unavailable(f"the owner of this {what} is not known yet") from None
        if _ident(owner) == me:  # routed here, yet another worker owns it
            shared_url.report(partition)
            raise unavailable(f"the {what}'s owner cannot be told apart from this worker")
        if FORWARDED in request.headers:
            raise unavailable(f"the {what}'s partition is moving between workers")
        request["served"] = "forwarded"  # type: ignore[index]  # Faust's Request type hides aiohttp's item access
        return await forward(owner, request)

    async def on_owner(
        request: Request,
        contact_id: str,
        answer: Callable[[LeadRecord], dict[str, Any] | Awaitable[dict[str, Any]]],
    ) -> Response:
        """Answer on this worker if it owns the lead, else forward to the owner."""
        check_contact_id(contact_id)
        forwarded = await elsewhere(request, contact_id, "lead")
        if forwarded is not None:
            return forwarded
        key = contact_id.encode("utf-8")
        written, record = in_flight(key) if in_flight is not None else (False, None)
        if not written:
            stored = leads.get(key)
            record = None if stored is None else decode_lead(stored, key)
        if record is None:
            raise ApiError(404, "not_found", "no lead with this contact id")
        if record.alias_of is not None:  # merged into another contact (docs/identity.md)
            raise ApiError(404, "not_found", "this contact id was merged into another lead")
        body = answer(record)
        if inspect.isawaitable(body):
            body = await body
        return aioweb.json_response(body)  # type: ignore[return-value]  # as above: aiohttp's response

    async def on_account_owner(
        request: Request, account_id: str, answer: Callable[[AccountRecord], dict[str, Any]]
    ) -> Response:
        """Answer on this worker if it owns the account, else forward to the owner."""
        check_account_id(account_id)
        if accounts is None:
            raise ApiError(404, "not_found", "accounts are not scored by this worker")
        forwarded = await elsewhere(request, account_id, "account")
        if forwarded is not None:
            return forwarded
        key = account_key(account_id)
        written, record = accounts_in_flight(key) if accounts_in_flight else (False, None)
        if not written:
            stored = accounts.get(key)
            record = None if stored is None else decode_account(stored)
        if not isinstance(record, AccountRecord):
            raise ApiError(404, "not_found", "no account with this id")
        return aioweb.json_response(answer(record))  # type: ignore[return-value]  # aiohttp's response

    async def gathered(
        request: Request,
        local: Callable[[list[int], int], dict[str, Any]],
        merge: Callable[[list[dict[str, Any]]], list[dict[str, Any]]],
    ) -> Response:
        """A list over every partition: this worker's part and, unless the request was
        forwarded, every other worker's (asked at once, for the same time), merged. An
        answer that does not cover every partition (a rebalance) is 503, never a list
        with leads missing."""
        reason = not_ready(app, settings)
        if reason is not None:
            raise unavailable(reason)
        if FORWARDED in request.headers:
            # The gathering worker's time; a header that is no epoch ms (only a caller
            # with the token can send one) means now, never a 500.
            raw = request.headers.get(AT, "")
            at = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 15 else clock()
            return aioweb.json_response(local(owned(), at))  # type: ignore[return-value]  # aiohttp's response
        at = clock()
        mine = owned()
        try:
            hosts = [URL(host) for host in app.router.table_metadata("leads")]
        except KeyError:
            raise unavailable("the workers of the group are not known yet") from None
        others = [host for host in hosts if _ident(host) != me]
        parts = [local(mine, at), *await asyncio.gather(*(ask(o, request, at) for o in others))]
        covered = sorted(p for part in parts for p in part["partitions"])
        if covered != list(range(partitions)):
            raise unavailable("partitions are moving between workers")
        if others:
            request["served"] = "gathered"  # type: ignore[index]  # Faust's Request type hides aiohttp's item access
        body = {**parts[0], "leads": merge([lead for part in parts for lead in part["leads"]])}
        body["partitions"] = covered
        return aioweb.json_response(body)  # type: ignore[return-value]  # aiohttp's response

    async def ask(worker: URL, request: Request, at: int) -> dict[str, Any]:
        """Another worker's part of a list (its own partitions only)."""
        try:
            async with app.http_client.get(**to_worker(worker, request, **{AT: str(at)})) as answer:
                if answer.status != 200:
                    raise unavailable(f"another worker answered {answer.status}")
                part: dict[str, Any] = await answer.json()
                return part
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            log.warning(
                "asking another worker for its part of a list failed: %s", type(error).__name__
            )
            raise unavailable("another worker did not answer") from None

    def query(request: Request, name: str) -> str | None:
        value: str | None = request.query.get(name)
        return value

    index = ranks if ranks is not None else RankIndex(rules)

    @app.page("/leads")
    class LeadListView(View):
        async def get(self, request: Request) -> Response:
            asked = check_list_query(request.query, rules)

            def local(mine: list[int], at: int) -> dict[str, Any]:
                found = index.top(
                    mine, at, asked.limit, asked.stage, asked.min_score, asked.account_id
                )
                return list_body(found, at, mine)

            def merge(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
                ordered = sorted(leads, key=lambda x: (x["score"], x["contact_id"]), reverse=True)
                return ordered[: asked.limit]

            return await gathered(request, local, merge)

    # Registered before /leads/{contact_id}: the path names this list, not a contact.
    @app.page("/leads/cooling")
    class CoolingView(View):
        async def get(self, request: Request) -> Response:
            asked = check_cooling_query(request.query)

            def local(mine: list[int], at: int) -> dict[str, Any]:
                found = index.cooling(mine, at, asked.within_ms, asked.limit)
                return cooling_body(found, at, asked.within_ms, mine, rules)

            def merge(leads: list[dict[str, Any]]) -> list[dict[str, Any]]:
                ordered = sorted(leads, key=lambda x: (x["drops_at"], x["contact_id"]))
                return ordered[: asked.limit]

            return await gathered(request, local, merge)

    @app.page("/leads/{contact_id}")
    class LeadView(View):
        async def get(self, request: Request, contact_id: str) -> Response:
            def answer(record: LeadRecord) -> dict[str, Any]:
                return lead_body(record, rules, check_at(query(request, "at"), record, clock()))

            return await on_owner(request, contact_id, answer)

    @app.page("/leads/{contact_id}/intelligence")
    class IntelligenceView(View):
        async def get(self, request: Request, contact_id: str) -> Response:
            def answer(record: LeadRecord) -> dict[str, Any]:
                at = check_at(query(request, "at"), record, clock())
                return intelligence_body(record, rules, at, settings.api_expose_pii)

            return await on_owner(request, contact_id, answer)

    @app.page("/leads/{contact_id}/history")
    class HistoryView(View):
        async def get(self, request: Request, contact_id: str) -> Response:
            limit = check_limit(query(request, "limit"), history.size)

            async def answer(record: LeadRecord) -> dict[str, Any]:
                try:
                    changes = await history.latest(record, limit)
                except HistoryUnavailable as error:
                    log.warning("history read failed: %s", error)
                    raise unavailable("the score-changes topic did not answer") from None
                return history_body(record, changes, history.size)

            return await on_owner(request, contact_id, answer)

    @app.page("/accounts/{account_id}")
    class AccountView(View):
        async def get(self, request: Request, account_id: str) -> Response:
            def answer(record: AccountRecord) -> dict[str, Any]:
                return account_body(record, rules, check_at(query(request, "at"), record, clock()))

            return await on_account_owner(request, account_id, answer)

    @app.page("/accounts/{account_id}/contacts")
    class AccountContactsView(View):
        async def get(self, request: Request, account_id: str) -> Response:
            limit = check_limit(query(request, "limit"), rules.accounts.track_contacts)

            def answer(record: AccountRecord) -> dict[str, Any]:
                at = check_at(query(request, "at"), record, clock())
                return account_contacts_body(record, rules, at, limit)

            return await on_account_owner(request, account_id, answer)

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        reason = not_ready(app, settings, broker_problem)
        if reason is not None:
            raise ApiError(503, "not_ready", reason, retry_after=RETRY_AFTER_S)
        return web.json({"status": "ready", "partitions": owned()})

    @app.page("/metrics")
    async def metrics(web: View, request: Request) -> Response:
        body, content_type = exposition()
        return aioweb.Response(body=body, headers={"Content-Type": content_type})  # type: ignore[return-value]  # aiohttp's response

    document = served_document(
        resources.files("leadscore").joinpath("openapi.json").read_bytes(), rules
    )

    @app.page("/openapi.json")
    async def openapi(web: View, request: Request) -> Response:
        return web.bytes(document, content_type="application/json")
