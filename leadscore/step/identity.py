"""The hand-off topic's records: how one partition's step asks another's to act.

A contact's lead lives on its key's partition, so anything that concerns a lead
elsewhere is handed to that partition through the internal hand-off topic
(``LEADSCORE_HANDOFF_TOPIC``, as many partitions as the events topic, keyed by
the contact it is for). The kinds, named in the ``leadscore.handoff`` header:

- ``event``: an event for another partition's lead: one that arrived off its
  key's partition, or one keyed by a contact merged into another (an alias).
  The value is the event's bytes as produced; ``leadscore.handoff.from`` is its
  original key, and it is scored on the record's key.
- ``absorb``: "merge your lead into ``survivor``", sent by the partition that
  scored the identify (or merge) event to the absorbed contact's partition.
- ``lead``: an absorbed lead's record, sent to the survivor's partition, which
  merges it (``scoring.merge.merge_leads``).
- ``erase``: an erase request for a contact whose lead is on this partition
  (``leadscore.step.privacy``); ``erase_alias``: clear the stub of a contact
  merged into an erased lead, and suppress its id.

Every kind carries ``leadscore.handoff.hops``: how many times it was handed on
along a chain of aliases. A record handed on more than ``MAX_HOPS`` times is
dead-lettered (``alias_loop``) rather than passed around for ever. A ``lead``
handed on also carries ``leadscore.handoff.path``: the contacts it passed
through, so a stub can tell that the lead came round a cycle of merges in
flight (``leadscore.step.batch``, take_lead).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Literal, cast

import orjson

from leadscore.codecs.leads import decode_lead, encode_lead
from leadscore.errors import InvalidEvent
from leadscore.scoring import LeadRecord

KIND = "leadscore.handoff"
FROM = "leadscore.handoff.from"
HOPS = "leadscore.handoff.hops"
PATH = "leadscore.handoff.path"
SEPARATOR = "\x1f"  # ids hold no control characters
MAX_HOPS = 16

Kind = Literal["event", "absorb", "lead", "erase", "erase_alias"]
Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Handoff:
    kind: Kind
    origin: bytes  # event: its original key; absorb, lead: the absorbed contact
    hops: int
    survivor: str = ""  # absorb: who absorbs the record's key
    cause_event_id: str | None = None
    occurred_at: int = 0
    lead: LeadRecord | None = None  # lead: the absorbed record (None: it had none)
    path: tuple[str, ...] = ()  # lead: the stubs it was handed on by, in order


def headers(kind: Kind, origin: bytes, hops: int, path: tuple[str, ...] = ()) -> Headers:
    found = ((KIND, kind.encode()), (FROM, origin), (HOPS, str(hops).encode()))
    return (*found, (PATH, SEPARATOR.join(path).encode())) if path else found


def absorb_value(survivor: str, cause_event_id: str | None, occurred_at: int) -> bytes:
    return orjson.dumps(
        {"survivor": survivor, "cause_event_id": cause_event_id, "occurred_at": occurred_at}
    )


def lead_value(record: LeadRecord | None, cause_event_id: str | None, occurred_at: int) -> bytes:
    lead = None if record is None else base64.b64encode(encode_lead(record)).decode()
    return orjson.dumps(
        {"lead": lead, "cause_event_id": cause_event_id, "occurred_at": occurred_at}
    )


def read_handoff(record_headers: Headers, value: bytes | None) -> Handoff:
    """A hand-off record's meaning, or InvalidEvent (``bad_handoff``) if it has none
    (only a worker writes this topic; anything else found there is dead-lettered)."""
    found = dict(record_headers)
    kind = found.get(KIND, b"").decode()
    origin = found.get(FROM)
    try:
        hops = int(found.get(HOPS, b"0"))
        if origin is None or kind not in ("event", "absorb", "lead", "erase", "erase_alias"):
            raise ValueError(kind)
        if kind in ("event", "erase", "erase_alias"):  # the value is read by the caller
            return Handoff(cast(Kind, kind), origin, hops)
        data = orjson.loads(value or b"")
        cause, at = data["cause_event_id"], int(data["occurred_at"])
        if kind == "absorb":
            return Handoff("absorb", origin, hops, str(data["survivor"]), cause, at)
        raw = data["lead"]
        lead = None if raw is None else decode_lead(base64.b64decode(raw), origin)
        path = found.get(PATH, b"").decode()
        return Handoff(
            "lead", origin, hops, "", cause, at, lead, tuple(path.split(SEPARATOR)) if path else ()
        )
    except Exception as exc:  # orjson, base64, int, KeyError, the lead codec: all bad input
        raise InvalidEvent(
            "bad_handoff", f"not a hand-off record this worker wrote: {type(exc).__name__}"
        ) from None
