"""Run artifacts: events.jsonl (the single source), summary.json, reports."""
