"""A Ctrl-C that lands as the stack's record turns "up" stops the stack; it does not abort start-up."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from cli.stack_commands import _CtrlC
from local.stack import _signals_held


def test_ctrl_c_aborts_start_up_and_stops_a_stack_that_is_up() -> None:
    ctrl_c = _CtrlC()
    with pytest.raises(KeyboardInterrupt):
        ctrl_c(signal.SIGINT, None)
    ctrl_c.started()
    ctrl_c(signal.SIGINT, None)
    assert ctrl_c.stop.is_set()


def test_a_signal_while_the_record_is_written_waits_for_the_block_then_is_delivered() -> None:
    seen: list[str] = []
    state = {"up": False}

    def handler(signum: int, frame: Any) -> None:
        seen.append("up" if state["up"] else "starting")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        with _signals_held():
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the block runs
            assert seen == []  # held back, not handled as "starting"
            state["up"] = True
        assert seen == ["up"]  # delivered once the block is done, not lost
    finally:
        signal.signal(signal.SIGINT, previous)
