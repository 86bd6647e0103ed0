"""$default and the actions every namespace shares: `ping`. Anything unrouted is answered here."""

from __future__ import annotations

from shared.actions import Empty
from shared.app import Namespace, Request
from shared.clock import iso
from shared.protocol import Outcome

session = Namespace(None)


@session.action("ping", Empty)
def ping(request: Request, _: Empty) -> Outcome:
    return Outcome({"timestamp": iso(request.now)}, event="pong")


handler = session.lambda_handler
