"""Fuzzing the readers: seeded truncations and bit flips of real and written files must give either a
scan or one line with exit status 2 from the CLI — never a traceback, never a file written."""

import io
import shutil
from contextlib import redirect_stderr, redirect_stdout

import numpy as np
import pytest

from geopurify.cli import main
from geopurify.io.ply import write_ply
from scan_trees import write_sevenscenes

CASES_PER_LAYOUT = 60


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    if len(data) < 2 or rng.random() < 0.4:
        return data[: int(rng.integers(0, max(1, len(data))))]                       # truncate
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):                                        # flip a few bits
        i = int(rng.integers(0, len(buf)))
        buf[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def _layouts(root, shared):
    """``(scan path, files that may be mutated)`` per layout, from real data where there is some."""
    rng = np.random.default_rng(0)
    out = {}
    ply = root / "cloud.ply"
    write_ply(ply, rng.normal(size=(300, 3)), rgb=rng.integers(0, 255, (300, 3)).astype(np.uint8),
              normals=np.tile([0.0, 0.0, 1.0], (300, 1)), scalars={"label": rng.integers(0, 41, 300).astype(np.int32)})
    out["ply"] = (ply, [ply])
    ascii_ply = root / "ascii.ply"
    write_ply(ascii_ply, rng.normal(size=(100, 3)), binary=False)
    out["ascii ply"] = (ascii_ply, [ascii_ply])
    seven = root / "seven"
    write_sevenscenes(seven, n=2)
    out["7scenes"] = (seven, sorted(seven.iterdir()))
    if shared is not None:
        dst = root / "s50k"                              # <dir>/<scene>_vert.npy etc., scan path <dir>/<scene>
        dst.mkdir()
        keep = np.random.default_rng(1).choice(50_000, 400, replace=False)
        for suffix in ("_vert.npy", "_sem_label.npy", "_ins_label.npy"):
            np.save(dst / f"scene0000_00{suffix}", np.load(shared / "scannet50k" / f"scene0000_00{suffix}")[keep])
        out["scannet50k (real)"] = (dst / "scene0000_00", sorted(dst.iterdir()))
        real = root / "kitchen"
        real.mkdir()
        for i in (0, 10):
            for kind in ("color.png", "depth.png", "pose.txt"):
                f = shared / "sevenscenes_redkitchen" / f"frame-{i:06d}.{kind}"
                if f.is_file():
                    shutil.copy(f, real / f.name)
            jpg = shared / "sevenscenes_redkitchen" / f"frame-{i:06d}.color.jpg"
            if jpg.is_file():
                shutil.copy(jpg, real / jpg.name)
        shutil.copy(shared / "sevenscenes_redkitchen" / "camera-intrinsics.txt", real)
        out["7scenes (real)"] = (real, sorted(p for p in real.iterdir() if not p.name.endswith("depth.png")) +
                                 sorted(real.glob("*depth.png")))
    return out


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    from conftest import SHARED_DATA
    root = tmp_path_factory.mktemp("fuzz")
    return root, _layouts(root, SHARED_DATA if SHARED_DATA.is_dir() else None)


def test_mutated_scans_give_a_scan_or_one_line(layouts):
    root, cases = layouts
    rng = np.random.default_rng(1234)
    seen = {"ok": 0, "error": 0}
    for name, (scan, files) in cases.items():
        assert main(["info", str(scan)]) == 0, name                                  # the originals read
        originals = {f: f.read_bytes() for f in files}
        before = sorted(p for p in root.rglob("*"))
        for case in range(CASES_PER_LAYOUT):
            victim = files[int(rng.integers(0, len(files)))]
            victim.write_bytes(_mutate(originals[victim], rng))
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                try:
                    rc = main(["info", str(scan)])
                except SystemExit as exc:                                          # argparse only
                    rc = exc.code
            lines = [line for line in err.getvalue().splitlines() if not line.startswith("WARNING")]
            assert rc in (0, 2), (name, case, victim.name, err.getvalue())
            if rc == 2:
                assert len(lines) == 1 and lines[0].startswith("geopurify: error: "), (name, case, err.getvalue())
            seen["ok" if rc == 0 else "error"] += 1
            victim.write_bytes(originals[victim])
        assert sorted(p for p in root.rglob("*")) == before, name                   # nothing written
    assert seen["error"] > 50 and seen["ok"] > 10, seen                             # both outcomes happen
