"""Chaos campaign: randomised fault schedules against an emulated fleet, invariants checked.

`python -m phalanx.chaos --schedules N --seed S --out DIR` (see `campaign.py`).
Schedules are pure data (`schedule.py`); one run is a real `phalanx run`
(`runner.py`); the invariants are recomputed from the run's artifacts without
phalanx's own accounting (`invariants.py`); results go to JSON and a Markdown
table (`report.py`).
"""
