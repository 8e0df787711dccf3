"""`--storage` accepts a local path or a URI (s3://, gs://, file://) that Tune writes through pyarrow."""
from pathlib import Path

from hmarl_rllib.experiments.training import RemoteDir, experiment_dir, fresh_experiment_dir


def test_local_storage_is_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert experiment_dir("run") == tmp_path / "tune_results" / "run"
    assert experiment_dir("run", "rel") == tmp_path / "rel" / "run"


def test_uri_storage_operations_work_through_pyarrow(tmp_path):
    exp = experiment_dir("run", f"file://{tmp_path}/store/")
    assert isinstance(exp, RemoteDir) and str(exp) == f"file://{tmp_path}/store/run"
    assert exp.name == "run" and str(exp.parent) == f"file://{tmp_path}/store"
    assert not exp.exists() and exp.glob("*") == []
    assert fresh_experiment_dir(exp) == exp
    exp.mkdir()
    (exp / "hmarl_run.yaml").write_text("name: x\n")
    (exp / "PPO_1").mkdir()
    (exp / "PPO_1" / "progress.csv").write_text("a\n1\n")
    assert Path(tmp_path, "store", "run", "hmarl_run.yaml").read_text() == "name: x\n"
    assert [str(p) for p in exp.glob("*/progress.csv")] == [f"{exp}/PPO_1/progress.csv"]
    # a used experiment folder is never overwritten: the next run goes to run_2
    assert fresh_experiment_dir(exp) == exp.with_name("run_2")
