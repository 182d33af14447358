"""Fixtures several test files share."""

import chainer
import pytest


@pytest.fixture
def chainer_dataset_root(tmp_path_factory, monkeypatch):
    """Chainer's dataset root (where the label checks are cached) in one
    temporary folder for the whole test session, for this process and the
    scripts it starts (``CHAINER_DATASET_ROOT``)."""
    root = str(tmp_path_factory.getbasetemp() / 'chainer_dataset')
    monkeypatch.setenv('CHAINER_DATASET_ROOT', root)
    old = chainer.dataset.get_dataset_root()
    chainer.dataset.set_dataset_root(root)
    yield root
    chainer.dataset.set_dataset_root(old)
