"""The routing advisor's resource: ``POST /v1/route`` (what the annex's rules say of a matter)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from hotline_bridge.catalog.advisor import AdviceError, Channel, advise
from hotline_bridge.catalog.model import Catalog, MatterClass, Platform
from hotline_bridge.core.errors import Invalid
from hotline_bridge.core.vocabulary import CategoryCode
from hotline_bridge.web.http import json_ok, read_model, require
from hotline_bridge.web.openapi import described


class RouteInput(BaseModel):
    """``POST /v1/route``: what the agent knows about the matter so far."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    category: CategoryCode | None = None
    matter_class: MatterClass | None = None
    danger_to_life: bool = False
    violent_risk: bool = False
    received_by: Platform | None = None  # default: this site
    decided: bool | None = None
    channel: Channel = Channel.PHONE


class Advisor:
    """The catalog and this site: everything the advisor needs besides the matter."""

    def __init__(self, catalog: Catalog, site: Platform) -> None:
        self.catalog = catalog
        self.site = site

    def route(self, body: RouteInput) -> dict[str, Any]:
        try:
            advice = advise(
                body.category,
                catalog=self.catalog,
                matter_class=body.matter_class,
                danger_to_life=body.danger_to_life,
                violent_risk=body.violent_risk,
                received_by=body.received_by or self.site,
                decided=body.decided,
                channel=body.channel,
            )
        except AdviceError as exc:
            raise Invalid("cannot advise", [{"field": exc.field, "problem": exc.problem}]) from None
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(advice).items()}


ADVISOR = web.AppKey("advisor", Advisor)


@described(
    "Routing advice for a matter (the annex's rules)",
    body=RouteInput,
    errors=(400, 401, 403, 413, 415, 422),
)
async def route_matter(request: web.Request) -> web.Response:
    require(request, "agent", "supervisor", "partner")
    return json_ok(request.app[ADVISOR].route(await read_model(request, RouteInput)))


@described("The matter catalog: the categories an agent picks from", errors=(401, 403))
async def list_categories(request: web.Request) -> web.Response:
    require(request, "agent", "supervisor", "partner")
    return json_ok(
        {
            "categories": [
                {
                    "code": c.code,
                    "label_zh": c.label_zh,
                    "label_en": c.label_en,
                    "matter_class": c.matter_class.value,
                }
                for c in request.app[ADVISOR].catalog.categories.values()
            ]
        }
    )


def install(app: web.Application, catalog: Catalog, site: Platform) -> Advisor:
    """Mount ``POST /v1/route`` and ``GET /v1/catalog`` for this site's catalog."""
    advisor = app[ADVISOR] = Advisor(catalog, site)
    app.router.add_routes(
        [web.post("/v1/route", route_matter), web.get("/v1/catalog", list_categories)]
    )
    return advisor
