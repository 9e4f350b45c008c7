"""The worker's process settings: torch's threads (pipeline/worker/process.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from moodshift.pipeline.settings import Settings
from moodshift.pipeline.worker.process import limit_torch_threads


def threads_in_a_new_thread() -> int:
    """torch's thread count as a thread started now sees it, after an operator ran there (the
    worker's model thread starts after the limit is set)."""
    def run() -> int:
        matrix = torch.ones(256, 256)
        (matrix @ matrix).sum()
        return torch.get_num_threads()

    with ThreadPoolExecutor(1) as executor:
        return executor.submit(run).result()


def test_the_model_thread_runs_on_the_threads_the_setting_names() -> None:
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert threads_in_a_new_thread() == 2
        limit_torch_threads(Settings().torch_threads)
        assert Settings().torch_threads == 1 and threads_in_a_new_thread() == 1
        limit_torch_threads(0)  # torch's default: left as it is
        assert threads_in_a_new_thread() == 1
    finally:
        torch.set_num_threads(previous)


def test_a_negative_thread_count_is_refused() -> None:
    with pytest.raises(ValueError, match="torch_threads"):
        Settings(torch_threads=-1)
