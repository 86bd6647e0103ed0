"""A session's (re)connection: take it back or start a new one, replay what it missed, and hand over to live
delivery so that every event of its rooms reaches it exactly once (decision 0065).

The hand-over, in order, on the connection `C` that (re)connects:
1. read the journal after the client's offset (complete, at most RECOVERY_MAX_EVENTS of the session's) up to
   at least the head read before it: a position reserved before the recovery began and not yet written is waited
   for, about a second (WRITER_WAITS), and if its writer has not written it by then (it died, decision 0108) the
   reconnection starts a new session; then take the session over (a conditional write: one connection wins it);
2. post the missed events, then the greeting (Socket.IO's CONNECT reply, the `session` event), all with
   their offsets, the greeting's being the last position read, the cut;
3. write C's memberships hearing their rooms from cut + 1, in one transaction with the condition that no
   position after the cut is reserved yet (decision 0102). If one is, post what the journal holds after the cut
   for the rooms not yet written, move the cut (or pause, when nothing new was written), and write again; if the cut
   still cannot be taken, close the connection, whose client recovers again from the offset it holds.
An event at a position up to the cut reached C in step 2 (or 3's catch-up) and never live: its broadcast reads
C's membership, if at all, with `since` past it. An event after the cut is reserved after the memberships
(the condition saw no position past the cut reserved), and every broadcast reads its members after its journal
write: it finds C and posts it live. Live posts come after step 2's, which had returned."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.delivery.hub import Hub
from shared.delivery.management_api import Delivery
from shared.observability import MetricUnit, logger, metrics
from shared.protocol.clock import Clock
from shared.protocol.codec import Codec, encode_event
from shared.protocol.identity import Identity
from shared.protocol.outbound import Figures, server_event
from shared.protocol.recovery import (
    Claim,
    Entry,
    SessionState,
    Unrecoverable,
    missed,
    new_pid,
    offset_text,
    room_in_session,
    session_frame,
    unrecoverable,
    valid_pid,
)
from shared.protocol.rooms import Room, analytics_room, company_room, parse_room, user_room
from shared.stores.access import AccessStore
from shared.stores.connections import TRANSACTION_ROOMS, ConnectionGone, ConnectionStore, JournalMoved
from shared.stores.journal import Journal, Span
from shared.stores.sessions import SessionStore

# Reading the journal costs the company's events, the session's or not: past this many per event the
# session may replay, a recovery is not worth proving and starts a new session.
SCAN_PER_EVENT = 10
HAND_OVER_ATTEMPTS = 50
# How long a recovery waits, in pauses of the clock, for positions reserved before it began to be written (decision
# 0108): a writer in flight writes within milliseconds; one that has not within about a second has most likely died
# between reserving and writing, and would hold the journal's watermark, so the hand-over's cut, for a minute.
WRITER_WAITS = (0.05, 0.1, 0.15, 0.3, 0.4)
# The hand-over's pause before trying its cut again when the journal read after it showed nothing new (the position
# after the cut is reserved by a writer still writing it): HAND_OVER_ATTEMPTS of them are about a second.
HAND_OVER_PAUSE = 0.02


@dataclass(frozen=True)
class RecoveryPolicy:
    window: timedelta
    max_events: int


@dataclass(frozen=True)
class Greeting:
    """How a session is told who it is: Socket.IO's CONNECT reply (None for a native session)."""

    connected: Callable[[str, str], str] | None
    """(sid, pid) to the CONNECT reply's text."""
    connecting: bool = False
    """The connection's $connect may not have returned yet (a native session, run by the deferred function):
    API Gateway answers 410 until it has, so the first post is retried meanwhile."""


@dataclass(frozen=True)
class Opened:
    pid: str
    sid: str
    recovered: bool
    replayed: int
    refusal: Unrecoverable | None


def home_rooms_of(namespace: str, identity: Identity) -> tuple[Room, ...]:
    """The rooms a new session is in from its start: its namespace's share of the connection's home rooms."""
    homes = (company_room(identity.company_id), user_room(identity.user_id))
    return tuple(room for room in homes if room_in_session(room.name, namespace))


def _room_name(company_id: str, key: str) -> str:
    return key.removeprefix(f"room#{company_id}#")


def _keys(company_id: str, names: list[str]) -> list[tuple[str, str]]:
    """(name, storage key) of each room name (the names a record's keys gave back)."""
    return [(name, room.key(company_id)) for name in names if (room := parse_room(name)) is not None]


class Sessions:
    def __init__(
        self,
        store: SessionStore,
        journal: Journal,
        connections: ConnectionStore,
        hub: Hub,
        policy: RecoveryPolicy,
        *,
        access: AccessStore,
        clock: Clock,
        metrics_now: Callable[[str, datetime], Figures] | None = None,
    ) -> None:
        """`metrics_now`: today's figures of a company, sent to a recovered session in its analytics room in
        place of the `metrics:update` events it missed (volatile, so not replayed)."""
        self._store = store
        self._journal = journal
        self._connections = connections
        self._hub = hub
        self._policy = policy
        self._access = access
        self._clock = clock
        self._metrics_now = metrics_now

    def open(
        self,
        connection_id: str,
        claim: Claim,
        *,
        pid_text: object,
        fresh_sid: str,
        greeting: Greeting,
        now: datetime,
    ) -> Opened:
        """Recover the session `pid_text` names for this connection, or start a new one; post the replay and
        the greeting, then join the session's rooms live (the hand-over above)."""
        identity = claim.identity
        company_id = identity.company_id
        head = self._journal.head(company_id)
        pid = valid_pid(pid_text)
        session = None if pid is None else self._store.get(pid)
        reason = unrecoverable(session, claim, head=head, now=now, window=self._policy.window)
        plan: tuple[SessionState, dict[str, int | None], list[Entry], int] | None = None
        if reason is None and session is not None and claim.offset is not None:
            plan, reason = self._plan(session, connection_id, claim, claim.offset, head=head, now=now)
        if plan is None:
            state = self._start(connection_id, claim, fresh_sid, head, now)
            rooms: dict[str, int | None] = {room.name: None for room in home_rooms_of(claim.namespace, identity)}
            replay: list[Entry] = []
            cut = head
        else:
            state, rooms, replay, cut = plan
        if reason is not None and pid is not None:
            logger.info("session not recovered", extra={"reason": str(reason)})
            metrics.add_metric(name="SessionsNotRecovered", unit=MetricUnit.Count, value=1)
        recovered = plan is not None
        codec = identity.codec
        texts = [self._text(entry, codec) for entry in replay]
        if greeting.connected is not None:
            texts.append(greeting.connected(state.sid, state.pid))
        hello = session_frame(claim.namespace, state.pid, recovered)
        texts.append(encode_event(hello, codec, offset_text(cut)).decode("utf-8"))
        # Since when the session is in each room: a restored room since it joined it, a new one from now (not
        # this hand-over's cut: should this connection drop before the replay reached its client, the next
        # recovery must still replay everything after the offset the client holds). Named on the record first,
        # so that whatever happens to this connection from here on, its session's next recovery finds them.
        joined = {name: cut + 1 if since is None else since for name, since in rooms.items()}
        keyed = {key: joined[name] for name, key in _keys(company_id, sorted(joined))}
        self._connections.remember(connection_id, keyed, (claim.namespace, state.pid))
        if recovered and self._kicked_since(claim, state):
            return self._refuse_kicked(connection_id, state)
        opened = Opened(state.pid, state.sid, recovered, len(replay), reason)
        if greeting.connecting and not self._first_post(connection_id, texts[0]):
            return opened
        if not self._post(connection_id, texts[1:] if greeting.connecting else texts):
            return opened
        if not self._hand_over(connection_id, identity, namespace=claim.namespace, state=state, rooms=joined, cut=cut):
            return opened
        if recovered and self._metrics_now is not None and analytics_room(company_id).name in rooms:
            latest = server_event("metrics:update", self._metrics_now(company_id, now))
            self._post(connection_id, [encode_event(latest, codec).decode("utf-8")])
        if recovered:
            metrics.add_metric(name="SessionsRecovered", unit=MetricUnit.Count, value=1)
            metrics.add_metric(name="EventsReplayed", unit=MetricUnit.Count, value=len(replay))
        return opened

    def _plan(
        self, session: SessionState, connection_id: str, claim: Claim, offset: int, *, head: int, now: datetime
    ) -> tuple[tuple[SessionState, dict[str, int | None], list[Entry], int] | None, Unrecoverable | None]:
        """What to replay and the cut, or why not. `head`: the last position reserved before the recovery began.
        Every position up to it must be replayable before the session is taken over: the hand-over's cut cannot pass
        a position reserved and not written (its condition is that nothing past the cut is reserved), so a replay
        and a greeting posted below one could never be followed by live delivery."""
        company_id = claim.identity.company_id
        held = self._connections.session_rooms(session.connection_id, (session.namespace, session.pid))
        if held is None:
            # Its holder has not named the session's rooms yet: what it is in cannot be proved.
            return None, Unrecoverable.INCOMPLETE
        rooms: dict[str, int | None] = {
            _room_name(company_id, key): since
            for key, since in held.items()
            if room_in_session(_room_name(company_id, key), claim.namespace)
        }
        limit = self._policy.max_events
        span = self._replayable(company_id, offset, head, limit * SCAN_PER_EVENT)
        if isinstance(span, Unrecoverable):
            return None, span
        replay = missed(span.entries, rooms, claim.namespace, {session.connection_id, connection_id})
        if len(replay) > limit:
            return None, Unrecoverable.TOO_MANY_EVENTS
        if not self._store.take_over(session, connection_id, offset, now):
            return None, Unrecoverable.TAKEN
        return (session, rooms, replay, span.head), None

    def _replayable(self, company_id: str, offset: int, head: int, budget: int) -> Span | Unrecoverable:
        """The journal after `offset` through `head` at least, or why it cannot be replayed. While a position up to
        `head` is not yet written, it pauses (the clock's sleep) and reads on after what it read, until it is or the
        pauses are spent."""
        span = self._journal.read_after(company_id, offset, budget)
        for pause in WRITER_WAITS:
            if span is None or not span.complete or span.head >= head:
                break
            self._clock.sleep(pause)
            more = self._journal.read_after(company_id, span.head, budget - len(span.entries))
            span = None if more is None else Span(span.entries + more.entries, more.head, more.complete)
        if span is None:
            return Unrecoverable.TOO_MANY_EVENTS
        if not span.complete:
            return Unrecoverable.INCOMPLETE
        if span.head < head:
            # Reserved before this recovery began and still not written: its writer most likely died between
            # reserving and writing. Nothing is posted or taken over; the client carries on with a new session.
            return Unrecoverable.UNWRITTEN
        return span

    def _kicked_since(self, claim: Claim, state: SessionState) -> bool:
        """Whether a kick or a revocation applied after the handshake (whose `sessionsEndedAt` the claim carries)
        ended the session just taken over. Read once the session is held and its rooms named: a kick that wrote
        its marker later lists this connection (recorded at $connect) and ends it, and its session, started
        before that marker, never recovers."""
        identity = claim.identity
        ended_at = self._access.read(identity.company_id, identity.user_id).sessions_ended_at
        return ended_at is not None and state.created_at <= ended_at

    def _refuse_kicked(self, connection_id: str, state: SessionState) -> Opened:
        """End the session, post nothing of it, and close the connection. The kick listed this connection (recorded
        at $connect, before any recovery starts) and told it why already: it is not told twice."""
        self._store.end(state.pid, connection_id)
        logger.info("session not recovered", extra={"reason": str(Unrecoverable.ENDED_BY_KICK)})
        metrics.add_metric(name="SessionsNotRecovered", unit=MetricUnit.Count, value=1)
        self._hub.close(connection_id)
        return Opened(state.pid, state.sid, False, 0, Unrecoverable.ENDED_BY_KICK)

    def _start(self, connection_id: str, claim: Claim, sid: str, head: int, now: datetime) -> SessionState:
        identity = claim.identity
        while True:
            state = SessionState(
                pid=new_pid(),
                sid=sid,
                namespace=claim.namespace,
                user_id=identity.user_id,
                company_id=identity.company_id,
                created_at=now,
                connection_id=connection_id,
                attached_at=now,
                floor=head,
                generation=0,
            )
            if self._store.create(state):
                return state

    def _hand_over(
        self,
        connection_id: str,
        identity: Identity,
        *,
        namespace: str,
        state: SessionState,
        rooms: Mapping[str, int],
        cut: int,
    ) -> bool:
        """Step 3: the memberships at a cut, with a catch-up each time an event took the cut's position. False when
        the connection is gone or closed before all were written."""
        company_id = identity.company_id
        pending = dict(rooms)
        holders = {state.connection_id, connection_id}
        session = (namespace, state.pid)
        for _ in range(HAND_OVER_ATTEMPTS):
            batch = sorted(pending)[:TRANSACTION_ROOMS]
            try:
                self._connections.attach(
                    connection_id,
                    identity,
                    {key: pending[name] for name, key in _keys(company_id, batch)},
                    cut,
                    session,
                    now=self._clock.now(),
                )
            except JournalMoved:
                span = self._journal.read_after(company_id, cut, self._policy.max_events * SCAN_PER_EVENT)
                if span is None or not span.complete:
                    break  # the journal moved too far during the hand-over to catch up
                catch_up = missed(span.entries, dict(pending), namespace, holders)
                if not self._post(connection_id, [self._text(entry, identity.codec) for entry in catch_up]):
                    return False
                if span.head == cut:
                    self._clock.sleep(HAND_OVER_PAUSE)  # a writer in flight past the cut: give it a moment
                cut = span.head
                continue
            except ConnectionGone:
                # Gone before its memberships were written: its record names the rooms (`remember`), and the
                # window starts now.
                self._store.disconnected(state.pid, connection_id, self._clock.now())
                return False
            for name in batch:
                del pending[name]
            if not pending:
                return True
        # The cut could not be taken (a writer past it died, the company's journal never paused, or moved too far):
        # the greeting is
        # posted, so no answer can take it back, and the connection is in none of its rooms yet. It is closed rather
        # than left deaf: its client reconnects with the offset it holds (nothing after it was posted), and that
        # recovery, or a new session, follows the rules above. Its record names the session's rooms (`remember`).
        logger.warning("session hand-over given up: connection closed", extra={"cut": cut})
        metrics.add_metric(name="SessionHandOversAbandoned", unit=MetricUnit.Count, value=1)
        self._hub.close(connection_id)
        return False

    def _first_post(self, connection_id: str, text: str) -> bool:
        """Post once $connect has returned (the open packet's wait, decision 0038)."""
        first = self._hub.send_once_connected(connection_id, text, lambda: self._connections.get(connection_id) is None)
        return first.delivery is Delivery.DELIVERED

    def _post(self, connection_id: str, texts: list[str]) -> bool:
        """Post in order, each after the last was accepted; False when the connection is gone."""
        return all(self._hub.send(connection_id, text) is not Delivery.GONE for text in texts)

    @staticmethod
    def _text(entry: Entry, codec: Codec) -> str:
        return encode_event(entry.frame, codec, offset_text(entry.position)).decode("utf-8")

    def closed(self, connection_id: str, sessions: tuple[tuple[str, str], ...], ended: bool, now: datetime) -> None:
        """The connection that held these sessions closed: they end (a clean close), else their window starts.
        A session another connection holds already is left alone."""
        for _namespace, pid in sessions:
            if ended:
                self._store.end(pid, connection_id)
            else:
                self._store.disconnected(pid, connection_id, now)

    def end(self, connection_id: str, pid: str) -> None:
        """The client ended the session (Socket.IO's `socket.disconnect()`)."""
        self._store.end(pid, connection_id)
