"""The SDC guard's part of summary.json: what was detected, the verdicts, who was quarantined."""

from __future__ import annotations

from typing import Any


def guard_summary(events: list[dict[str, Any]]) -> dict[str, Any]:
    detections: dict[tuple[int, str, str], dict[str, Any]] = {}
    for event in events:
        if event.get("kind") != "sdc":
            continue
        key = (event["step"], event["check"], event.get("replica", ""))
        record = detections.setdefault(
            key,
            {
                "step": event["step"],
                "check": event["check"],
                "replica": event.get("replica"),
                "reason": event.get("reason"),
                "local_rerun": event.get("local_rerun"),
            },
        )
        # The culprit's own event carries the attribution; keep it when it comes.
        if event.get("local_rerun") is not None:
            record["local_rerun"] = event["local_rerun"]
            record["reason"] = event.get("reason")
    ordered = sorted(detections.values(), key=lambda d: (d["step"], d["check"], d["replica"] or ""))
    for record in ordered:
        verdicts = {"bad": "persistent fault on this device", "ok": "transient"}
        if record["check"] == "fingerprint_mismatch":
            record["verdict"] = "parameters diverged: healed from a peer"
        else:
            record["verdict"] = verdicts.get(str(record.get("local_rerun")))
    quarantined = [
        {"replica": e["replica"], "step": e["step"], "offences": e.get("offences")}
        for e in events
        if e.get("kind") == "quarantine"
    ]
    return {"detections": ordered, "quarantined": quarantined}
