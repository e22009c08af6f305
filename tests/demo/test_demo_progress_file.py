"""Progress bars report to a file for ``polymodal demo`` when POLYMODAL_PROGRESS_FILE is set."""

import json
import os

from polymodal.core.progress import progress_bar


def test_bars_write_their_state_and_remove_the_file(tmp_path, monkeypatch):
    prefix = tmp_path / ".progress"
    monkeypatch.setenv("POLYMODAL_PROGRESS_FILE", str(prefix))
    monkeypatch.setenv("POLYMODAL_PROGRESS", "0")  # the file is written even when drawing is off
    path = tmp_path / f".progress.{os.getpid()}.json"
    with progress_bar(10, "epochs") as outer:
        with progress_bar(4, "batches") as inner:
            state = json.loads(path.read_text())["bars"]
            assert [b["description"] for b in state] == ["epochs", "batches"]
            inner.advance(4)
        outer.advance(3)
        outer.update(loss=0.25)
        import polymodal.core.progress as p

        p._FILE_BARS.write(force=True)
        state = json.loads(path.read_text())["bars"]
        assert state == [{"description": "epochs", "completed": 3.0, "total": 10, "info": "loss=0.25"}]
    assert not path.exists()
