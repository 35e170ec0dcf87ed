"""The SDC guard's part of summary.json: what was detected, the verdicts, who was quarantined."""

from __future__ import annotations

from typing import Any

VERDICTS = {
    "chip": "the chip's fault (an offence)",
    "data": "the data's (reproduced on the chip, a peer agreed): no offence",
    "heal_source": "a copy of its heal source's wrong state: no offence, healed again",
    "unknown": "no evidence gathered (no attempt followed)",
    "outer_round": "missed an outer round its site's peers applied: no offence, healed",
}


def guard_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Each detection once (every observer writes its own event), with its evidence."""
    detections: dict[tuple[int, str, str], dict[str, Any]] = {}
    for event in events:
        if event.get("kind") != "sdc":
            continue
        named = event.get("replica") or ",".join(sorted(event.get("replicas") or []))
        key = (event["step"], event["check"], named)
        record = detections.setdefault(
            key,
            {
                "step": event["step"],
                "check": event["check"],
                "replica": event.get("replica"),
                "replicas": event.get("replicas"),
                "attribution": event.get("attribution"),
                "rerun": event.get("rerun"),
                "peer": event.get("peer"),
                "reason": event.get("reason"),
            },
        )
        # The culprit's own event carries the reason; keep it when it comes.
        if event.get("reason") and not record["reason"]:
            record["reason"] = event["reason"]
    ordered = sorted(detections.values(), key=lambda d: (d["step"], d["check"], d["replica"] or ""))
    for record in ordered:
        if record["check"] == "fingerprint_mismatch" and record["attribution"] != "heal_source":
            record["verdict"] = "parameters diverged: healed from a peer"
        elif record["check"] == "fingerprint_tie":
            record["verdict"] = "no majority: settled by the vetoes or the newest checkpoint"
        else:
            record["verdict"] = VERDICTS.get(str(record["attribution"]))
    quarantined = [
        {"replica": e["replica"], "step": e["step"], "offences": e.get("offences")}
        for e in events
        if e.get("kind") == "quarantine"
    ]
    return {"detections": ordered, "quarantined": quarantined}
