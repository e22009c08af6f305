"""Fixtures of the federated tests."""

import pytest


@pytest.fixture
def task_identity(monkeypatch):
    """Messages built outside a Flower runtime need the task identity Flower's runtime would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1)
