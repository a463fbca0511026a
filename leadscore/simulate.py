"""Synthetic but realistic engagement traffic for demos, tests and benchmarks.

Most contacts browse (page views, email opens); a few show buying intent and
move through signup, downloads, pricing and demo requests. Seeded, so a run
draws the same contacts and event sequence; event ids are fresh every run.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# (event type, weight) per intent level: browsing contacts mostly read; buying ones act.
MIXES: dict[str, list[tuple[str, float]]] = {
    "browsing": [("page_view", 70), ("email_open", 25), ("email_click", 4), ("download", 1)],
    "curious": [
        ("page_view", 50),
        ("email_open", 20),
        ("email_click", 8),
        ("download", 10),
        ("pricing_page_view", 6),
        ("signup", 4),
        ("webinar_attended", 2),
    ],
    "buying": [
        ("page_view", 30),
        ("pricing_page_view", 15),
        ("download", 15),
        ("signup", 15),
        ("demo_request", 15),
        ("email_open", 10),
    ],
}
INTENT_SHARE = [("browsing", 0.8), ("curious", 0.15), ("buying", 0.05)]
PAGES = ["/", "/blog/kafka-scoring", "/docs", "/pricing", "/customers", "/careers"]


@dataclass(frozen=True)
class Contact:
    contact_id: str
    account_id: str
    intent: str
    weight: float  # how often this contact shows up relative to others
    hot: bool = False  # a buyer who bursts: many events, close together


class TrafficModel:
    """Draws engagement events for a population of contacts."""

    def __init__(
        self,
        contacts: int,
        seed: int = 7,
        hot_share: float = 0.02,
        prefix: str = "contact-",
        seeded_ids: bool = False,
        hot_weight: float = 20.0,
    ) -> None:
        self.rng = random.Random(seed)  # noqa: S311 -- synthetic traffic, not security
        # Seeded ids make the whole stream reproducible (benchmarks); otherwise ids are
        # fresh every run, so a repeated run is new traffic, not duplicates.
        self.seeded_ids = seeded_ids
        self.contacts: list[Contact] = []
        for i in range(contacts):
            hot = self.rng.random() < hot_share  # a few buyers burst: many events, fast
            intent = "buying" if hot else self._pick(INTENT_SHARE)
            weight = self.rng.paretovariate(2.0) * (hot_weight if hot else 1.0)
            self.contacts.append(
                Contact(f"{prefix}{i:07d}", f"account-{i // 5:06d}", intent, weight, hot)
            )
        self._cum: list[float] = []
        total = 0.0
        for c in self.contacts:
            total += c.weight
            self._cum.append(total)

    def _pick(self, choices: list[tuple[str, float]]) -> str:
        values = [value for value, _ in choices]
        weights = [weight for _, weight in choices]
        return self.rng.choices(values, weights=weights)[0]

    def pick_contact(self) -> Contact:
        return self.rng.choices(self.contacts, cum_weights=self._cum)[0]

    def next_event(self, occurred_at_ms: int) -> dict[str, Any]:
        return self.event_for(self.pick_contact(), occurred_at_ms)

    def event_for(self, contact: Contact, occurred_at_ms: int) -> dict[str, Any]:
        kind = self._pick(MIXES[contact.intent])
        properties = {
            "campaign": self.rng.choice(["q4-webinar", "newsletter", "paid-search", "organic"])
        }
        if kind in ("page_view", "pricing_page_view"):
            properties["url"] = (
                "/pricing" if kind == "pricing_page_view" else self.rng.choice(PAGES)
            )
        return {
            "event_id": str(
                uuid.UUID(int=self.rng.getrandbits(128), version=4)
                if self.seeded_ids
                else uuid.uuid4()
            ),
            "contact_id": contact.contact_id,
            "account_id": contact.account_id,
            "type": kind,
            "occurred_at": occurred_at_ms,
            "source": "simulator",
            "properties": properties,
        }

    def events(self, count: int, start_ms: int, spacing_ms: int = 1) -> Iterator[dict[str, Any]]:
        for i in range(count):
            yield self.next_event(start_ms + i * spacing_ms)
