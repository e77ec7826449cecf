"""Starting the local Ray head: one more attempt after a failed one, and only after
stopping (by PID) what the failed attempt left running. ``ray.init`` is replaced
by a stand-in that starts a real child process the way Ray would, then fails."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from modelplane import launcher

TIMED_OUT = (
    "The current node timed out during startup. This could happen because some of "
    "the raylet failed to startup or the GCS has become overloaded."
)


class FakeInit:
    """Fails the first ``failures`` calls, each leaving a Ray-looking child behind."""

    def __init__(self, tmp_path: Path, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.children: list[subprocess.Popen[bytes]] = []
        # A script under a ray/ folder: its command line looks like Ray's own.
        script = tmp_path / "ray" / "gcs_stand_in.py"
        script.parent.mkdir()
        script.write_text("import time\ntime.sleep(60)\n")
        self._script = script

    def __call__(self, **options: Any) -> None:
        self.calls += 1
        self.children.append(subprocess.Popen([sys.executable, str(self._script)]))
        if self.calls <= self.failures:
            raise Exception(TIMED_OUT)


@pytest.fixture()
def no_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "shutdown", lambda: None)


@pytest.fixture()
def reaped() -> Iterator[list[subprocess.Popen[bytes]]]:
    children: list[subprocess.Popen[bytes]] = []
    yield children
    for child in children:  # whatever the test left, by PID
        if child.poll() is None:
            child.kill()
        child.wait(10)


def test_a_failed_start_is_cleaned_up_and_tried_once_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_shutdown: None,
    reaped: list[subprocess.Popen[bytes]],
) -> None:
    init = FakeInit(tmp_path, failures=1)
    monkeypatch.setattr(ray, "init", init)
    launcher._start_local_ray(num_cpus=1)
    reaped.extend(init.children)
    assert init.calls == 2
    first, second = init.children
    # Stopped (and reaped) by the launcher before it returned; it would sleep 60 s.
    assert first.poll() is not None
    assert second.poll() is None  # what the good attempt started keeps running


def test_a_start_failing_twice_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_shutdown: None,
    reaped: list[subprocess.Popen[bytes]],
) -> None:
    init = FakeInit(tmp_path, failures=2)
    monkeypatch.setattr(ray, "init", init)
    with pytest.raises(launcher.LocalRayUnavailable) as caught:
        launcher._start_local_ray(num_cpus=1)
    reaped.extend(init.children)
    assert init.calls == 2
    assert all(child.poll() is not None for child in init.children)
    message = str(caught.value)
    assert message.startswith("ray: the local Ray head did not start in 2 attempts")
    assert "timed out during startup" in message and "--ray-address" in message
    # The CLI prints OSErrors as "error: <message>"; the code maps to UNAVAILABLE.
    assert isinstance(caught.value, OSError)
    assert caught.value.code.name == "UNAVAILABLE"
