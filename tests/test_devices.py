"""Devices: CPU needs nothing more; on CUDA a cell runs on the GPU, and a model too big for
one GPU is split by accelerate (device_map="auto"). The CUDA tests skip without a GPU."""

from __future__ import annotations

import pytest
import torch

import benchmark.models as models
from benchmark.models import load_model, random_init_like, wants_device_map

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_never_asks_for_a_device_map(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(models, "GPU_WEIGHT_SHARE", 0.0)  # every model "too big"
    assert not wants_device_map(tiny_model_dir, torch.device("cpu"))
    loaded = load_model(tiny_model_dir, torch.device("cpu"))
    assert loaded.device.type == "cpu" and not hasattr(loaded.model, "hf_device_map")


@needs_gpu
def test_a_cell_runs_on_cuda(tiny_model_dir, tmp_path):
    import shutil

    from benchmark.results import cell_path, read_cell
    from benchmark.runner import evaluate_folder
    from benchmark.submissions import write_submission_toml
    from test_pipeline import TINY_EVAL

    assert load_model(tiny_model_dir).device.type == "cuda"  # the default device
    folder = tmp_path / "tiny-gpu"
    shutil.copytree(tiny_model_dir, folder / "model")
    write_submission_toml(folder, "tiny-gpu", "a tiny model on the GPU")
    out = evaluate_folder(folder, ["rhymes"], TINY_EVAL, tmp_path / "results")
    assert [o.status for o in out] == ["ok"], out
    assert read_cell(cell_path(tmp_path / "results", "tiny-gpu", "rhymes"))["status"] == "ok"


@needs_gpu
def test_a_model_too_big_for_one_gpu_loads_with_a_device_map(tiny_model_dir, monkeypatch):
    pytest.importorskip("accelerate")
    import benchmark.safety as safety

    whole = load_model(tiny_model_dir)
    maps, load_checked = [], safety.load_checked
    monkeypatch.setattr(safety, "load_checked", lambda folder, device_map: maps.append(device_map) or
                        load_checked(folder, device_map))
    monkeypatch.setattr(models, "GPU_WEIGHT_SHARE", 0.0)  # every model "too big"
    split = load_model(tiny_model_dir)
    assert maps == ["auto"]
    ids = torch.tensor([[5, 6, 7, 8]], device=whole.device)
    with torch.no_grad():
        assert torch.allclose(split.model(ids.to(split.device)).logits.cpu(), whole.model(ids).logits.cpu(), atol=1e-5)


def test_the_control_of_a_split_model_is_split_alike(tiny_model_dir):
    """accelerate marks a model it placed over several devices with ``hf_device_map``."""
    pytest.importorskip("accelerate")
    loaded = load_model(tiny_model_dir, torch.device("cpu"))
    plain = random_init_like(loaded, 0)
    loaded.model.hf_device_map = {"": "cpu"}  # what a split looks like, on the one device here
    control = random_init_like(loaded, 0)
    assert control.model.hf_device_map == {"": "cpu"}
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(control.model(ids).logits, plain.model(ids).logits)
