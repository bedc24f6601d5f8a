"""How a watching client paces its checks, and which server events call for one."""

from __future__ import annotations

from pathlib import Path

import pytest
from flowtest import core_for

from tskcfg._events import ServerEvent
from tskcfg._watching import announces_news, pause_after_check


def test_a_quick_answer_without_news_is_followed_by_a_pause(tmp_path: Path) -> None:
    watch = core_for(tmp_path)
    settings, retry = watch.settings, watch.retry
    assert pause_after_check(settings, retry, changed=True, elapsed=0.01) == 0.0
    assert pause_after_check(settings, retry, changed=False, elapsed=0.25) == pytest.approx(0.75)
    # a long poll that ran out
    assert pause_after_check(settings, retry, changed=False, elapsed=60.0) == 0.0
    poll = core_for(tmp_path, mode="poll", poll_interval=7)
    assert pause_after_check(poll.settings, poll.retry, changed=True, elapsed=0.01) == 7.0


def test_only_events_naming_an_unseen_version_trigger_a_fetch() -> None:
    seen = 3
    assert announces_news(ServerEvent(id="9", event="version", data='{"version": 4}'), seen)
    assert not announces_news(ServerEvent(id="9", event="version", data='{"version": 3}'), seen)
    assert not announces_news(ServerEvent(id="9", event="version", data="not json"), seen)
    assert not announces_news(ServerEvent(id=None, event="message", data='{"version": 4}'), seen)
