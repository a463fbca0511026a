"""The lead query API on each worker (Faust web views), answered by the key's owner.

A request for a contact whose partition another worker owns is forwarded to
that worker (Faust's table routing) and its answer returned. While the
assignment is unknown (rebalance) or tables are recovering, the answer is 503
with Retry-After, never a wrong or empty lead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust
from faust.web import Request, Response, View
from faust.web.exceptions import ServiceUnavailable

from leadscore.api import ApiError, check_contact_id, check_token, intelligence_body, lead_body
from leadscore.codecs.leads import decode_lead
from leadscore.config import Settings
from leadscore.scoring import LeadRecord, Rules

RETRY_AFTER_S = 5
Body = Callable[[LeadRecord, Rules, int], dict[str, Any]]


def install_web(
    app: faust.App, leads: Any, rules: Rules, settings: Settings, clock: Callable[[], int]
) -> None:
    token = settings.api_token.get_secret_value() if settings.api_token else None

    def answer(web: Any, error: ApiError) -> Response:
        headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
        return web.json(error.body(), status=error.status, headers=headers)  # type: ignore[no-any-return]

    def owned() -> list[int]:
        """The events partitions assigned to this worker."""
        assigned = app.consumer.assignment()
        return sorted(tp.partition for tp in assigned if tp.topic == settings.events_topic)

    def not_ready() -> str | None:
        if app.rebalancing:
            return "the consumer group is rebalancing"
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]
            return "tables are being recovered from their changelogs"
        if not owned():
            return "no partitions of the events topic are assigned to this worker"
        return None

    def unavailable(reason: str) -> ApiError:
        return ApiError(503, "unavailable", reason, retry_after=RETRY_AFTER_S)

    def local(body: Body) -> Callable[..., Any]:
        async def read(view: View, request: Request, contact_id: str) -> Response:
            reason = not_ready()
            if reason is not None:
                return answer(view, unavailable(reason))
            stored = leads.get(contact_id.encode("utf-8"))
            if stored is None:
                return answer(view, ApiError(404, "not_found", "no lead with this contact id"))
            record = decode_lead(stored)
            return view.json(body(record, rules, clock()))

        return app.table_route(table=leads, match_info="contact_id")(read)

    def lead_view(body: Body) -> type[View]:
        routed = local(body)

        class LeadView(View):
            async def get(self, request: Request, contact_id: str) -> Response:
                try:
                    check_token(token, request.headers.get("Authorization"))
                    check_contact_id(contact_id)
                except ApiError as error:
                    return answer(self, error)
                try:
                    return await routed(self, request, contact_id=contact_id)  # type: ignore[no-any-return]
                except ServiceUnavailable:
                    return answer(self, unavailable("the owner of this lead is not known yet"))

        return LeadView

    app.page("/leads/{contact_id}")(lead_view(lead_body))
    app.page("/leads/{contact_id}/intelligence")(lead_view(intelligence_body))

    @app.page("/healthz")
    async def healthz(web: View, request: Request) -> Response:
        return web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(web: View, request: Request) -> Response:
        reason = not_ready()
        if reason is not None:
            return answer(web, ApiError(503, "not_ready", reason, retry_after=RETRY_AFTER_S))
        return web.json({"status": "ready", "partitions": owned()})
