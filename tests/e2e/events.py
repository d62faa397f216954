"""The platform's event stream, as a test waits on it.

`EventLog` subscribes to an account's events over voxflow's WebSocket (`/v1.0/ws`) as soon as it
is made, and keeps every event in order. A case waits for the event that tells it something
happened (a call hung up, a flow run started) instead of polling the REST API: `wait` looks at
what already came, then blocks until the next event or the deadline.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

Event = dict
SUBSCRIBE_TIMEOUT_S = 10.0


class EventLog:
    """Every event of `topics` from now on, in order (by default the token's account: all but
    the opt-in `activeflow_updated`, which `activeflow:<id>` carries)."""

    def __init__(self, http_base: str, token: str, topics: tuple[str, ...] = ("account",)):
        ws_base = "ws://" + http_base.split("://", 1)[-1]
        self._ws = connect(f"{ws_base}/v1.0/ws?token={token}", open_timeout=SUBSCRIBE_TIMEOUT_S,
                           proxy=None)
        self._ws.send(json.dumps({"type": "subscribe", "topics": list(topics)}))
        reply = json.loads(self._ws.recv(timeout=SUBSCRIBE_TIMEOUT_S))
        if reply.get("type") != "subscribed":
            self._ws.close()
            raise RuntimeError(f"subscribing to the account's events: {reply}")
        self._events: list[Event] = []
        self._problems: list[str] = []
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="event-log", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for message in self._ws:
                msg = json.loads(message)
                with self._changed:
                    if msg.get("type") == "event" and isinstance(msg.get("event"), dict):
                        self._events.append(msg["event"])
                    elif msg.get("type") == "error":
                        self._problems.append(str(msg.get("error")))
                    self._changed.notify_all()
        except (ConnectionClosed, OSError, ValueError) as e:
            with self._changed:
                self._problems.append(f"event stream ended: {type(e).__name__}: {e}")
        finally:
            with self._changed:
                self._closed = True
                self._changed.notify_all()

    def wait(self, pred: Callable[[Event], bool], timeout_s: float, *,
             after: int = 0) -> tuple[Event | None, str]:
        """The first event (from index `after`) that `pred` holds of, waiting up to `timeout_s`
        for it; else None and why."""
        deadline = time.monotonic() + timeout_s
        seen = after
        with self._changed:
            while True:
                for event in self._events[seen:]:
                    if pred(event):
                        return event, ""
                seen = max(seen, len(self._events))
                remaining = deadline - time.monotonic()
                if self._closed or remaining <= 0:
                    why = "; ".join(self._problems) or f"not within {timeout_s:.0f}s"
                    return None, f"{why} ({len(self._events)} events seen)"
                self._changed.wait(remaining)

    def mark(self) -> int:
        """Where the log is now: `wait(..., after=mark)` looks only at later events."""
        with self._changed:
            return len(self._events)

    @property
    def closed(self) -> bool:
        """The stream ended (the server went away): a new log is needed."""
        with self._changed:
            return self._closed

    def snapshot(self) -> list[Event]:
        """Every event so far, in order."""
        with self._changed:
            return list(self._events)

    def of_call(self, call_id: str) -> list[Event]:
        """The events of one call so far, in order."""
        with self._changed:
            return [e for e in self._events if e.get("call_id") == call_id]

    def close(self) -> None:
        self._ws.close()
        self._reader.join(timeout=5)


def is_hangup(event: Event) -> bool:
    return event.get("type") == "call_hangup"


def call_of(event: Event) -> dict:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def wait_ended_call(api, list_calls: Callable, match: Callable[[dict], bool], what: str,
                    timeout_s: float) -> tuple[dict | None, str]:
    """The one call record `match` holds of, once hung up (bounded): read after subscribing to
    the account's events, then again when a matching `call_hangup` event came."""
    events = api.events()
    for _ in range(2):
        try:
            calls = [c for c in list_calls(api) if match(c)]
        except Exception as e:  # noqa: BLE001 (API trouble is the case failing, with why)
            return None, f"GET /v1.0/calls: {e}"
        if len(calls) > 1:
            return None, f"{len(calls)} call records {what}"
        if calls and calls[0].get("status") == "hangup":
            return calls[0], ""
        ended, why = events.wait(lambda e: is_hangup(e) and match(call_of(e)), timeout_s)
        if ended is None:
            state = f"status still {calls[0].get('status')!r}" if calls else "no call record"
            return None, f"{state} {what}: no call_hangup event: {why}"
    return None, f"a call_hangup event {what}, but the record is not hung up"


def wait_call_status(api, call_id: str, statuses: set[str],
                     timeout_s: float) -> tuple[dict | None, str]:
    """The call record once its status is one of `statuses` (bounded): read after subscribing
    to the account's events, else the first of the call's events that shows it."""
    events = api.events()
    try:
        rec = api.call("GET", f"/v1.0/calls/{call_id}")
    except Exception as e:  # noqa: BLE001 (API trouble is the case failing, with why)
        return None, f"GET /v1.0/calls/{call_id}: {e}"
    if isinstance(rec, dict) and rec.get("status") in statuses:
        return rec, ""
    event, why = events.wait(lambda e: e.get("call_id") == call_id
                             and call_of(e).get("status") in statuses, timeout_s)
    return (call_of(event), "") if event else (None, f"no event with status {statuses}: {why}")
