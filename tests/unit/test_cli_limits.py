"""`--limit` outside what a listing can show is a usage error, not an empty listing."""

from __future__ import annotations

import pytest

from cli.main import main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["dlq", "list", "--limit", "0"], "must be between 1 and 10000, got 0"),
        (["services", "--limit", "-1"], "must be between 1 and 10000, got -1"),
        (["ignored", "--limit", "0"], "must be between 1 and 10000, got 0"),
        (["history", "iris", "--limit", "101"], "must be between 1 and 100, got 101"),
        (["history", "iris", "--limit", "ten"], "not a whole number: 'ten'"),
    ],
)
def test_a_limit_that_would_list_nothing_or_too_much_is_refused(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(argv)
    assert ended.value.code == 2
    assert f"argument --limit: {says}" in capsys.readouterr().err
