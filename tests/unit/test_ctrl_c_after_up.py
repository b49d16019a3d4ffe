"""Ctrl-C aborts a start-up, and stops a stack that is up (from just before its record says so)."""

from __future__ import annotations

import argparse
import signal

import pytest

from cli.stack_commands import _after_up, _CtrlC


def test_ctrl_c_aborts_start_up_and_stops_a_stack_that_is_up() -> None:
    ctrl_c = _CtrlC()
    with pytest.raises(KeyboardInterrupt):
        ctrl_c(signal.SIGINT, None)
    ctrl_c.started()
    ctrl_c(signal.SIGINT, None)
    assert ctrl_c.stop.is_set()


def test_a_detached_up_interrupted_as_start_up_ended_leaves_nothing_running(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Started:
        stopped = False

        def stop(self) -> None:
            self.stopped = True

    ctrl_c, started = _CtrlC(), Started()
    ctrl_c.started()
    ctrl_c(signal.SIGINT, None)  # between on_up and the command's return

    code = _after_up(argparse.Namespace(detach=True), started, ctrl_c.stop)  # type: ignore[arg-type]

    assert code == 130 and started.stopped
    assert "the stack was stopped" in capsys.readouterr().err
