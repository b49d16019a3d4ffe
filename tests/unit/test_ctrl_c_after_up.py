"""Ctrl-C aborts a start-up, and stops a stack that is up (from just before its record says so)."""

from __future__ import annotations

import signal

import pytest

from cli.stack_commands import _CtrlC


def test_ctrl_c_aborts_start_up_and_stops_a_stack_that_is_up() -> None:
    ctrl_c = _CtrlC()
    with pytest.raises(KeyboardInterrupt):
        ctrl_c(signal.SIGINT, None)
    ctrl_c.started()
    ctrl_c(signal.SIGINT, None)
    assert ctrl_c.stop.is_set()
