"""The /analytics namespace's actions: a company's live figures, requested or pushed to its dashboard viewers."""

from __future__ import annotations

from shared.protocol.actions import AnalyticsRequest, Empty
from shared.protocol.frames import Outcome
from shared.protocol.namespaces import ANALYTICS
from shared.protocol.outbound import AnalyticsRoom, answer
from shared.protocol.rooms import analytics_room
from shared.wiring.namespace import Namespace, Request

analytics = Namespace(ANALYTICS)


@analytics.action("analytics:subscribe", Empty)
def subscribe(request: Request, _: Empty) -> Outcome:
    runtime = request.services
    identity = request.identity
    room = analytics_room(identity.company_id)
    runtime.connections.join(request.connection_id, identity, room, request.now)
    runtime.analytics.subscribe(identity.company_id, request.now)
    return answer("analytics:subscribe", AnalyticsRoom(room=room.name))


@analytics.action("analytics:unsubscribe", Empty)
def unsubscribe(request: Request, _: Empty) -> Outcome:
    room = analytics_room(request.identity.company_id)
    request.services.connections.leave(request.connection_id, request.identity.company_id, room)
    return answer("analytics:unsubscribe", AnalyticsRoom(room=room.name))


@analytics.action("analytics:request", AnalyticsRequest)
def report(request: Request, data: AnalyticsRequest) -> Outcome:
    figures = request.services.analytics.report(request.identity.company_id, data.period, request.now)
    return answer("analytics:request", figures)
