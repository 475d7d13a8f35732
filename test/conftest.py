"""Fixtures shared by the test files; tiny model configs and builders live in tiny_model.py."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and OpenMP spinning on a busy 2-core machine costs 10x.

    Use per module with ``pytestmark = pytest.mark.usefixtures("one_thread")`` or request it by name."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
