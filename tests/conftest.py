"""Shared fixtures: tiny models and a small rhymes vocabulary, built once per session."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# CLI tests run their jobs in this process (tests/test_parallel.py covers the worker pool).
os.environ["MESABENCH_WORKERS"] = "1"


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run faster on one thread than fighting over two (measured ~40x on a
    loaded 2-core machine), and the numbers do not depend on it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def rhymes_tokenizer():
    from benchmark.models import word_tokenizer
    from tasks import get_task

    return word_tokenizer(get_task("rhymes").vocabulary())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, rhymes_tokenizer):
    """A randomly initialised 2-layer GPT-2 saved as an ordinary model folder."""
    from benchmark.models import new_gpt2

    model = new_gpt2(rhymes_tokenizer, n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=0)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    model.save_pretrained(folder, safe_serialization=True)
    rhymes_tokenizer.save_pretrained(folder)
    return folder
