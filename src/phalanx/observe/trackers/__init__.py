"""`phalanx run --log KIND:TARGET`: the run's metrics in the tracker a team already uses.

TensorBoard, Weights & Biases and MLflow, each an optional extra
(`pip install 'phalanx[trackers]'`). The launcher feeds them from the same
events the live view folds (observe/fleet_view.py), so a tracker sees what the
terminal shows: loss, throughput, shares, phase times, energy, faults. A tracker
that fails is said once and dropped; training never waits on it.
"""

from phalanx.observe.trackers.feed import TrackerFeed, open_trackers
from phalanx.observe.trackers.spec import LogSpec, parse_log_specs

__all__ = ["LogSpec", "TrackerFeed", "open_trackers", "parse_log_specs"]
