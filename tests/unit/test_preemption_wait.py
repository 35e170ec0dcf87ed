"""A SIGTERM cuts short a wait that is still a wait, and nothing else.

A sites run's replica waiting for its outer round's quorum may wait for a site
that already left; the signal must end that wait (the step boundary then
checkpoints and leaves), but never land once the awaited answer is being
applied. Real signals to this process, a real blocking wait on the main thread.
"""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import Future

import pytest

from phalanx.runtime.preemption import PreemptedInWait, Preemption

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def preemption():
    before = signal.getsignal(signal.SIGTERM)
    catcher = Preemption()
    catcher.install()
    yield catcher
    signal.signal(signal.SIGTERM, before)


def _term_soon(answer: Future | None = None) -> threading.Thread:
    """SIGTERM to this process from another thread, then (optionally) the answer."""

    def send() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        if answer is not None:
            answer.set_result("quorum")

    return threading.Thread(target=send)


def test_a_sigterm_ends_a_wait_that_is_still_waiting(preemption):
    pending: Future = Future()  # never answered: the quorum of a site that left
    sender = _term_soon()
    with pytest.raises(PreemptedInWait), preemption.cut_short_while(lambda: not pending.done()):
        sender.start()
        pending.result()  # blocks on the main thread, as torchft's quorum wait does
    sender.join()
    assert preemption.requested


def test_a_sigterm_after_the_answer_came_waits_for_the_boundary(preemption):
    answer: Future = Future()
    answer.set_result("quorum")  # the answer is in: it is being applied, not waited for
    with preemption.cut_short_while(lambda: not answer.done()):
        os.kill(os.getpid(), signal.SIGTERM)
        assert answer.result() == "quorum"
    assert preemption.requested  # left at the next step boundary instead


def test_a_sigterm_seen_before_the_wait_ends_it_at_once_and_outside_nothing_is_cut(preemption):
    os.kill(os.getpid(), signal.SIGTERM)  # no wait armed: only noted
    assert preemption.requested
    with pytest.raises(PreemptedInWait), preemption.cut_short_while(lambda: True):
        pytest.fail("a wait entered after the signal must not start")
