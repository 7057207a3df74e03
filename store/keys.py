"""Every Redis key the application writes, built in one place under one namespace.

One module for all prefixes (as arq does) so that a reader can see the whole keyspace, and
so tests can run side by side on one Redis by using different namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every key family (the part after the namespace), and what a member's export and erasure
# do with it (store/state.py Traces). A test fails on a family the app writes that is not
# listed here.
FAMILIES: dict[str, str] = {
    "dedupe": "erased: markers named by her message",
    "result": "erased: the first answer to her message, for WeChat's retries",
    "nonce": "nothing of hers (a request digest)",
    "order": "erased: her message order",
    "token": "nothing of hers (the access_token)",
    "lock": "nothing of hers",
    "sent": "erased: send marks named by her messages",
    "flow": "exported and erased: her journey and inbox; others' frames that name her",
    "match": "exported and erased: her card, her place in the index, others' 'seen' of her",
    "allow": "exported and erased: her customer-service budget and the pushes waiting",
    "rate": "nothing of hers",
    "link": "erased: her open export links",
    "campaign": "nothing of hers (stop flags)",
    "outbox": "exported and erased: her messages kept while the database was down",
    "jobs": "erased: queued jobs that carry her content (the queue entry too)",
    "arq": "erased: arq's own records of her jobs",
}


@dataclass(frozen=True)
class Keys:
    namespace: str = "scrm"

    def family(self, key: str) -> str:
        """The family of a key this deployment wrote (arq's own keys are "arq")."""
        if key.startswith("arq:"):
            return "arq"
        return key.removeprefix(f"{self.namespace}:").split(":", 1)[0]

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def dedupe(self, key: str) -> str:
        """Set (NX) before any work on an inbound message; its presence means 'seen'."""
        return self._k("dedupe", key)

    def nonce(self, key: str) -> str:
        """A signed request's timestamp and nonce, holding the digest of its body."""
        return self._k("nonce", key)

    def result(self, key: str) -> str:
        """The outcome of the first attempt, for retries to answer identically."""
        return self._k("result", key)

    def order_next(self, follower: str) -> str:
        """Ticket counter: arrival order of one follower's messages."""
        return self._k("order", follower, "next")

    def order_done(self, follower: str) -> str:
        """Highest ticket finished for one follower."""
        return self._k("order", follower, "done")

    def order_turn(self, follower: str, ticket: int) -> str:
        """A list pushed when the ticket before `ticket` finishes (a wake-up, no polling)."""
        return self._k("order", follower, "turn", str(ticket))

    def token(self, name: str) -> str:
        return self._k("token", name)

    def token_lock(self, name: str) -> str:
        return self._k("lock", "token", name)

    def sent(self, key: str) -> str:
        """Marks an outbound push as attempted, so a re-run job never sends it twice."""
        return self._k("sent", key)

    def flow_state(self, profile_id: str) -> str:
        """The member's journey in progress (flow stack and collected slots)."""
        return self._k("flow", profile_id)

    def match_index(self, scope: str) -> str:
        """Members open to matching, scored by birth-date ordinal: all, city:X, prov:X."""
        return self._k("match", "idx", scope)

    def match_card(self, profile_id: str) -> str:
        """What matching needs of one member (nickname, anchor, city, tags, load, feedback)."""
        return self._k("match", "card", profile_id)

    def match_seen(self, profile_id: str) -> str:
        """Members not to suggest again to this one (invited, declined, blocked, matched)."""
        return self._k("match", "seen", profile_id)

    def flow_inbox(self, profile_id: str) -> str:
        """Flows the bot started for a member (an invitation); merged by her next turn."""
        return self._k("flow", profile_id, "inbox")

    def allowance(self, address: str) -> str:
        """A member's contact allowance on a channel (bot/allowance.py)."""
        return self._k("allow", address)

    def link(self, nonce: str) -> str:
        """What a single-use link (a member's export) opens; gone once opened."""
        return self._k("link", nonce)

    def send_rate(self, bucket: int = 0) -> str:
        """The next free send slot (microseconds, Redis clock) for the global send rate."""
        return self._k("rate", "send", str(bucket))

    def campaign_stop(self, broadcast_id: str) -> str:
        """Set when a broadcast is cancelled or paused: send loops check it before each send."""
        return self._k("campaign", broadcast_id, "stop")

    @property
    def outbox(self) -> str:
        """Stream of inbound messages waiting for the database to come back."""
        return self._k("outbox")

    @property
    def queue(self) -> str:
        """The arq job queue shared by every app process."""
        return self._k("jobs")
