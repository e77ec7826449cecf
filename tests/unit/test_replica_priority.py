"""A Serve replica says so when it runs below normal CPU priority."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from modelplane.serving.app import _warn_if_deprioritized


def _on_a_thread_at_nice(niceness: int) -> None:
    def run() -> None:
        # On Linux a thread's nice value is its own: raising it here leaves the
        # test process's other threads as they are.
        os.setpriority(os.PRIO_PROCESS, 0, niceness)
        _warn_if_deprioritized("r-1")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_a_replica_at_nice_15_warns_and_names_the_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="modelplane.serving.app"):
        _on_a_thread_at_nice(15)
    (record,) = caplog.records
    assert "replica r-1 runs at nice 15" in record.getMessage()
    assert "RAY_worker_niceness=0" in record.getMessage()


def test_a_replica_at_normal_priority_says_nothing(caplog: pytest.LogCaptureFixture) -> None:
    if os.getpriority(os.PRIO_PROCESS, 0) > 0:
        pytest.skip("this test process itself runs above nice 0")
    with caplog.at_level(logging.WARNING, logger="modelplane.serving.app"):
        _warn_if_deprioritized("r-1")
    assert caplog.records == []
