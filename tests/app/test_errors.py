"""The user's errors: one line each, whatever the exception they come from says."""

from __future__ import annotations

import pytest

from app.errors import UserError, one_line, user_errors


@pytest.mark.parametrize(("raised", "line"), [
    (ValueError("bad header"), "--data d.json: bad header"),
    (ValueError(), "--data d.json: ValueError"),  # no text: its type, not a line ending in ': '
    (ValueError("line one\n  detail two"), "--data d.json: line one"),  # one line, not two
])
def test_user_errors_are_one_line_with_something_after_the_prefix(raised, line):
    with pytest.raises(UserError) as caught, user_errors(ValueError, prefix="--data d.json: "):
        raise raised
    assert str(caught.value) == line
    assert one_line(caught.value) == line


def test_other_errors_pass_through():
    with pytest.raises(KeyError), user_errors(ValueError):
        raise KeyError("x")
