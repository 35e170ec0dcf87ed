"""The launcher's side of `--log`: events in, tracker calls out, on a thread of their own.

The launcher's loop supervises the fleet every 50 ms; a tracker may block on a
slow network (an MLflow server, W&B online). So the loop only folds an event into
numbers and puts them on a bounded queue; one thread makes every tracker call,
in order. A tracker that raises is said once and dropped; the run goes on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.observe.fleet_view import FleetView
from phalanx.observe.trackers import metrics
from phalanx.observe.trackers.sinks import Tracker, make_tracker
from phalanx.observe.trackers.spec import LogSpec

QUEUE_LIMIT = 100_000  # items; a tracker this far behind loses steps rather than memory
CLOSE_WAIT_S = 60.0  # the most a finishing run waits for its trackers (a dead server)
_STOP = object()


class TrackerFeed:
    def __init__(
        self,
        specs: list[LogSpec],
        out_dir: Path,
        run_config: dict[str, Any],
        say: Callable[[str], None],
        warn: Callable[[str], None],
    ) -> None:
        self.specs = specs
        self.out_dir = out_dir
        self.say, self.warn = say, warn  # `warn` is heard under --quiet too
        self.run_name = out_dir.resolve().name
        self.queue: queue.Queue[Any] = queue.Queue(QUEUE_LIMIT)
        self.dropped = 0
        self._logged_steps: set[int] = set()
        self._worker_config_sent = False
        self._put(("config", run_config))
        self.thread = threading.Thread(target=self._serve, name="phalanx-trackers", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------ launcher thread
    def event(self, event: dict[str, Any], view: FleetView) -> None:
        """Call after `view.apply(event)`: the view already counts this event."""
        kind = event.get("kind")
        if kind == "step" and event.get("step") not in self._logged_steps:
            self._logged_steps.add(event["step"])  # every participant writes the same step
            self._put(("metrics", event["step"], metrics.step_metrics(event, view)))
        elif kind == "worker_start" and not self._worker_config_sent:
            self._worker_config_sent = True
            keys = ("steps", "global_batch_size", "num_samples", "seed")
            self._put(("config", {k: event[k] for k in keys if event.get(k) is not None}))
        line = metrics.note(event)
        if line is not None:
            step = event.get("step")
            self._put(("note", step if isinstance(step, int) else max(view.last_step, 0), line))

    def close(self, summary: dict[str, Any]) -> None:
        """Log the summary, finish every tracker; waits at most CLOSE_WAIT_S."""
        self._put(("finish", metrics.summary_metrics(summary), bool(summary.get("completed"))))
        self.queue.put(_STOP)  # blocking: the stop must not be the item that is dropped
        self.thread.join(CLOSE_WAIT_S)
        if self.thread.is_alive():
            self.warn(f"warning: --log: trackers still busy after {CLOSE_WAIT_S:.0f}s; left them")
        if self.dropped:
            self.warn(f"warning: --log: {self.dropped} updates dropped (a tracker fell behind)")

    def _put(self, item: tuple) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    # ------------------------------------------------------------ tracker thread
    def _serve(self) -> None:
        trackers: dict[LogSpec, Tracker] = {}
        for spec in self.specs:
            try:
                trackers[spec] = make_tracker(spec, self.run_name, self.out_dir)
                self.say(trackers[spec].where)
            except Exception as err:  # an unreachable server, a bad URI: the run goes on
                self.warn(f"warning: --log {spec}: could not start ({_one_line(err)}); not logged")
        while True:
            item = self.queue.get()
            if item is _STOP:
                return
            for spec, tracker in list(trackers.items()):
                try:
                    _call(tracker, item)
                except Exception as err:
                    self.warn(
                        f"warning: --log {spec}: stopped ({_one_line(err)}); training goes on"
                    )
                    del trackers[spec]


def _call(tracker: Tracker, item: tuple) -> None:
    what = item[0]
    if what == "metrics":
        tracker.metrics(item[1], item[2])
    elif what == "note":
        tracker.note(item[1], item[2])
    elif what == "config":
        tracker.config(item[1])
    elif what == "finish":
        tracker.finish(item[1], item[2])


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def open_trackers(
    specs: list[LogSpec],
    out_dir: Path,
    run_config: dict[str, Any],
    say: Callable[[str], None],
    warn: Callable[[str], None],
) -> TrackerFeed | None:
    """A feed for the run's trackers, or None when no `--log` was given."""
    return TrackerFeed(specs, out_dir, run_config, say, warn) if specs else None
