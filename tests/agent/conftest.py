"""Fixtures of the agent's fast tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.outbox import Outbox


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    """An open outbox in tmp_path, closed after the test."""
    box = Outbox(tmp_path / "outbox.sqlite")
    await box.open()
    yield box
    await box.close()
