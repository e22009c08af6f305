"""The front door: every command has --help; errors are one clear line; compare's result.json contract."""

import json
import os
import subprocess
import sys

import pytest

from polymodal.cli import main


def _run(*args):
    env = dict(os.environ, POLYMODAL_PROGRESS="0")
    return subprocess.run([sys.executable, "-m", "polymodal.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.mark.parametrize("cmd", [[], ["list"], ["info"], ["run"], ["compare"], ["demo"], ["data"], ["data", "fetch"],
                                 ["data", "list"], ["llm"], ["llm", "chat"], ["llm", "serve"], ["fl"],
                                 ["fl", "launch"]])
def test_every_command_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: polymodal" in capsys.readouterr().out


def test_list_and_info(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("nlgcl", "mf-bpr", "lightgcn", "sgl", "simgcl", "xsimgcl"):
        assert name in out
    assert main(["info", "nlgcl"]) == 0
    out = capsys.readouterr().out
    assert "cl_temp = 0.1" in out and "baselines: mf-bpr, lightgcn, sgl, simgcl, xsimgcl" in out


def test_unknown_recipe_and_bad_value_are_clear(capsys, tmp_path):
    assert main(["info", "nlgc"]) == 2
    assert "no recipe named 'nlgc'" in capsys.readouterr().err
    assert main(["run", "nlgcl", "--set", "epochs=0", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "field 'epochs'" in err and "greater than or equal to 1" in err
    assert not (tmp_path / "x").exists()  # nothing half-written
    assert main(["run", "nlgcl", "--set", "n_layer=3"]) == 2
    assert "did you mean 'n_layers'" in capsys.readouterr().err
    assert main(["compare", "nlgcl", "--only", "nlgcl,bpr"]) == 2
    assert "--only names bpr" in capsys.readouterr().err


def test_malformed_inter_file_error_names_file_and_line(tmp_path, capsys):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "bad.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t5\n1\t3\n")
    assert main(["run", "lightgcn", "--data", str(d), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "bad.inter" in err and "line 3" in err


def test_compare_result_contract(tmp_path):
    out = tmp_path / "cmp"
    p = _run("compare", "nlgcl", "--quick", "--only", "nlgcl,mf-bpr", "--set", "epochs=3", "--out", str(out))
    assert p.returncode == 0, p.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["recipe"] == "nlgcl" and result["primary_metric"] == "ndcg@20"
    assert [r["method"] for r in result["rows"]] == ["nlgcl", "mf-bpr"]
    for row in result["rows"]:
        assert set(row) == {"method", "metrics", "train_seconds", "peak_rss_mb"}
        assert 0.0 <= row["metrics"]["recall@20"] <= 1.0 and row["metrics"]["ndcg@20"] > 0
        assert row["train_seconds"] > 0 and row["peak_rss_mb"] > 50
    # both methods trained on the same protocol (quick settings + the --set)
    cfgs = [(out / m / "config.yaml").read_text() for m in ("nlgcl", "mf-bpr")]
    assert all("epochs: 3" in c and "batch_size: 1024" in c for c in cfgs)
    report = (out / "report.md").read_text()
    assert "| nlgcl |" in report and "curves.png" in report and (out / "curves.png").stat().st_size > 1000
    # resuming a finished compare re-runs nothing and gives the same table
    p2 = _run("compare", "--resume", str(out))
    assert p2.returncode == 0, p2.stderr
    assert json.loads((out / "result.json").read_text())["rows"] == result["rows"]
