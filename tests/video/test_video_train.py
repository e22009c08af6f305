import pytest
import torch

from polymodal.core.runs import Run
from polymodal.video import train as T
from polymodal.video.backbones import TinyX3D


def _data(n=24):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 4, 3, 16, 16, generator=g) * 0.2
    x[y == 1, :, 0] += 0.6  # class 1 is red
    return x, y


def test_classifier_learns_and_metrics_by_hand():
    torch.set_num_threads(1)
    x, y = _data()
    m = TinyX3D(2, widths=(8,), blocks=(1,))
    T.train_classifier(m, x, y, T.TrainSettings(epochs=15, lr=1e-2, batch_size=8))
    assert T.evaluate_classifier(m, x, y)["top1"] >= 0.9
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
    m2 = T.accuracy_metrics(logits, torch.tensor([0, 1]))
    assert m2["top1"] == 0.5 and m2["top5"] == 1.0


def test_resume_mid_training_gives_identical_weights(tmp_path):
    torch.set_num_threads(1)
    x, y = _data()
    s4 = T.TrainSettings(epochs=4, lr=5e-3, batch_size=8, seed=3)

    torch.manual_seed(0)
    ref = TinyX3D(2, widths=(8,), blocks=(1,))
    T.train_classifier(ref, x, y, s4, run=Run.create(tmp_path / "a", "t", {}), tag="m")

    run = Run.create(tmp_path / "b", "t", {})
    torch.manual_seed(0)
    part = TinyX3D(2, widths=(8,), blocks=(1,))
    T.train_classifier(part, x, y, T.TrainSettings(epochs=2, lr=5e-3, batch_size=8, seed=3), run=run, tag="m")
    torch.manual_seed(0)
    resumed = TinyX3D(2, widths=(8,), blocks=(1,))  # fresh object, state comes from the checkpoint
    hist = T.train_classifier(resumed, x, y, s4, run=Run.open(run.dir), tag="m")
    assert len(hist) == 4
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    lines = [r for r in Run.open(run.dir).read_metrics() if r.get("tag") == "m"]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]


def test_load_or_train_trains_once(tmp_path):
    x, y = _data(8)
    run = Run.create(tmp_path / "r", "t", {})
    m = T.load_or_train(TinyX3D(2, widths=(8,), blocks=(1,)), x, y, T.TrainSettings(epochs=1), run=run, tag="teacher")
    assert not m.training and (run.checkpoint_dir / "teacher-final.pt").is_file()
    fresh = TinyX3D(2, widths=(8,), blocks=(1,))
    T.load_or_train(fresh, x, y, T.TrainSettings(epochs=1), run=run, tag="teacher")
    for a, b in zip(m.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_lr_schedule_warmup_and_cosine():
    from polymodal.video.train import TrainSettings, lr_factor

    s = TrainSettings(epochs=4, schedule="cosine", warmup_epochs=1)
    f = [lr_factor(s, k, 10) for k in range(40)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)  # linear warm-up over the first epoch
    assert f[10] == pytest.approx(1.0) and all(a >= b for a, b in zip(f[10:], f[11:], strict=False))
    assert f[25] == pytest.approx(0.5, abs=0.06) and f[39] < 0.01
    assert lr_factor(TrainSettings(epochs=4), 17, 10) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(TrainSettings(schedule="step"), 0, 1)


def test_scheduled_training_resumes_exactly_after_a_kill(tmp_path):
    """Warm-up + cosine is a function of the global step, so a run killed after epoch 2 of 4 ends identically."""
    torch.set_num_threads(1)
    x, y = _data()
    s4 = T.TrainSettings(epochs=4, lr=5e-3, batch_size=8, seed=3, schedule="cosine", warmup_epochs=1)
    torch.manual_seed(0)
    ref = TinyX3D(2, widths=(8,), blocks=(1,))
    T.train_classifier(ref, x, y, s4, run=Run.create(tmp_path / "a", "t", {}), tag="m")

    class Killed(Exception):
        pass

    def kill_after_2(epoch: int, loss: float) -> None:
        if epoch == 2:
            raise Killed

    run = Run.create(tmp_path / "b", "t", {})
    torch.manual_seed(0)
    part = TinyX3D(2, widths=(8,), blocks=(1,))
    ce = lambda xb, yb, idx: torch.nn.functional.cross_entropy(part(xb), yb)  # noqa: E731
    with pytest.raises(Killed):
        T.fit(part, x, y, ce, s4, run=run, tag="m", on_epoch=kill_after_2)
    resumed = TinyX3D(2, widths=(8,), blocks=(1,))
    T.train_classifier(resumed, x, y, s4, run=Run.open(run.dir), tag="m")
    for a, b in zip(ref.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
