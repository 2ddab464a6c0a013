"""Golden outputs of the official Sonata / PTv3 code, for ``tests/test_sonata.py`` (run once, not in CI).

The official implementation (``facebookresearch/sonata`` at commit ``18c09ff``) needs spconv, torch_scatter
and timm. This script runs it on CPU in a throw-away environment outside the repo::

    python3 -m venv ../venv-sonata          # throw-away, outside the repo
    ../venv-sonata/bin/pip install torch==2.13.0            # the CPU build
    ../venv-sonata/bin/pip install spconv==2.3.8 addict numpy scipy huggingface_hub packaging
    git -C <sonata mirror> archive 18c09ff sonata | tar -x -C /tmp/sonata-src
    ../venv-sonata/bin/python tools/make_sonata_golden.py --sonata-src /tmp/sonata-src \
        --scan ../shared/data/scannet50k/scene0000_00_vert.npy

``spconv==2.3.8`` on PyPI is the CPU build (the ``-cuXXX`` packages are the CUDA ones) and runs the
submanifold convolutions on CPU, except that its CPU kernels refuse a bias (spconv#366): the script
runs the convolution without its bias and adds the bias to the output features (exactly what the
CUDA kernel fuses). Two small shims replace packages that would not install here, both
documented and exact for what the official model calls:

* ``torch_scatter.segment_csr(src, indptr, reduce)`` (needs a compiler and a matching torch) is
  ``torch.segment_reduce(src, reduce, offsets=indptr)``: the same CSR segment reduction;
* ``timm.layers.DropPath`` (timm imports torchvision, which would pull a CUDA torch) is only built with
  ``drop_path=0`` here (and is identity in eval mode anyway): ``nn.Identity``-like.

``flash_attn`` is absent, so the model runs its own non-flash attention (``enable_flash=False``, as the
official README advises without FlashAttention), which is the path whose padding rule the native model copies.

Writes ``tests/fixtures/sonata_golden.pt`` (no points of the scan, only indices and digests:
a small configuration with seeded random weights that
exercises every code path: 4 stages, all four serialization orders, patch sizes below every stage's
point count and not dividing it, layer scale, mask token) and ``tests/fixtures/sonata_keys.json``
(every state-dict key and shape of ``PointTransformerV3`` built from the released Sonata backbone
configuration in Pointcept's ``configs/sonata/pretrain-sonata-v1m1-0-base.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from real_crops import column_crop, crop_digest  # noqa: E402  (the crop is defined once, where the test rebuilds it)

# Pointcept configs/sonata/pretrain-sonata-v1m1-0-base.py, model.backbone (type PT-v3m2), as released;
# enable_flash off because flash_attn is not installed (the key set does not depend on it).
RELEASED = dict(
    in_channels=9, order=("z", "z-trans", "hilbert", "hilbert-trans"), stride=(2, 2, 2, 2),
    enc_depths=(3, 3, 3, 12, 3), enc_channels=(48, 96, 192, 384, 512), enc_num_head=(3, 6, 12, 24, 32),
    enc_patch_size=(1024, 1024, 1024, 1024, 1024), mlp_ratio=4, qkv_bias=True, qk_scale=None,
    attn_drop=0.0, proj_drop=0.0, drop_path=0.3, shuffle_orders=True, pre_norm=True, enable_rpe=False,
    enable_flash=False, upcast_attention=False, upcast_softmax=False, traceable=True, enc_mode=True,
    mask_token=True,
)

SMALL = dict(
    in_channels=9, order=("z", "z-trans", "hilbert", "hilbert-trans"), stride=(2, 2, 2),
    enc_depths=(4, 2, 2, 4), enc_channels=(16, 24, 32, 40), enc_num_head=(2, 2, 4, 4),
    enc_patch_size=(96, 64, 48, 24), mlp_ratio=4, qkv_bias=True, qk_scale=None,
    attn_drop=0.0, proj_drop=0.0, drop_path=0.0, layer_scale=0.5, shuffle_orders=False, pre_norm=True,
    enable_rpe=False, enable_flash=False, upcast_attention=False, upcast_softmax=False, traceable=True,
    enc_mode=True, mask_token=True,
)


def install_shims() -> None:
    ts = types.ModuleType("torch_scatter")

    def segment_csr(src: torch.Tensor, indptr: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        return torch.segment_reduce(src, reduce, offsets=indptr.long(), axis=0)

    ts.segment_csr = segment_csr
    sys.modules["torch_scatter"] = ts

    class DropPath(nn.Module):
        def __init__(self, p: float = 0.0) -> None:
            super().__init__()
            self.p = p  # identity: the golden run is in eval mode, where DropPath is identity

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    # spconv's CPU path asserts "cpu don't support act and bias" (spconv#366/#719; Pointcept#194 notes
    # that deleting the assertion silently drops the bias): run the conv without bias, then add it.
    import spconv.pytorch as spconv  # noqa: PLC0415

    conv_cls = spconv.conv.SparseConvolution
    plain_forward = conv_cls.forward

    def forward_with_cpu_bias(self, input, *args, **kwargs):
        bias = self.bias
        if bias is None or input.features.is_cuda:
            return plain_forward(self, input, *args, **kwargs)
        self.bias = None
        try:
            out = plain_forward(self, input, *args, **kwargs)
        finally:
            self.bias = bias
        return out.replace_feature(out.features + bias)

    conv_cls.forward = forward_with_cpu_bias

    timm = types.ModuleType("timm")
    layers = types.ModuleType("timm.layers")
    layers.DropPath = DropPath
    timm.layers = layers
    sys.modules["timm"] = timm
    sys.modules["timm.layers"] = layers


def kept_points(raw: dict[str, np.ndarray], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(M,)`` index of the raw point each official voxel kept (its centred xyz is exactly that point's)."""
    coord = torch.from_numpy(raw["coord"])
    lo, hi = coord.min(0).values, coord.max(0).values
    centred = coord - torch.stack([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    nearest = torch.cdist(inputs["feat"][:, :3].double(), centred.double()).min(1)
    assert float(nearest.values.max()) == 0.0
    return nearest.indices


def randomise(model: nn.Module, seed: int) -> None:
    """Seeded weights at a realistic scale (the official init zeroes biases and shrinks weights)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p[0].numel() if "cpe.0" not in name else p.shape[1] * p.shape[2] * p.shape[3] * p.shape[4]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
            elif name.endswith("gamma"):
                p.copy_(0.5 + 0.2 * torch.randn(p.shape, generator=g))
            elif name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def upcast(point, levels: int = 2) -> torch.Tensor:
    """The official demo's / GeoPurify's upcast, verbatim in logic: concat ``levels`` times, then copy."""
    for _ in range(levels):
        parent = point.pop("pooling_parent")
        inverse = point.pop("pooling_inverse")
        parent.feat = torch.cat([parent.feat, point.feat[inverse]], dim=-1)
        point = parent
    while "pooling_parent" in point.keys():
        parent = point.pop("pooling_parent")
        inverse = point.pop("pooling_inverse")
        parent.feat = point.feat[inverse]
        point = parent
    return point.feat


def stage_feats(point) -> list[torch.Tensor]:
    out = [point.feat.clone()]
    while "pooling_parent" in point.keys():
        point = point["pooling_parent"]
        out.append(point.feat.clone())
    return out[::-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sonata-src", required=True, help="folder holding the official sonata package")
    ap.add_argument("--scan", required=True, help="a scannet50k *_vert.npy")
    ap.add_argument("--size", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    # spconv 2.3.8's CPU submanifold convolution races when torch runs several threads: repeated runs
    # of the same input differ by O(1). One thread makes it deterministic (and correct: it then
    # matches a naive gather-matmul-add convolution; see tests/test_sonata.py).
    torch.set_num_threads(1)
    install_shims()
    sys.path.insert(0, args.sonata_src)
    import sonata  # noqa: PLC0415  (the official package)

    raw = column_crop(Path(args.scan), args.size)
    np.random.seed(args.seed)  # GridSample mode="train" keeps a random point per voxel
    data = sonata.transform.default()({k: v.copy() for k, v in raw.items()})
    inputs = {k: data[k] for k in ("coord", "grid_coord", "feat", "inverse")}
    inputs["offset"] = torch.tensor([len(inputs["coord"])])  # one scene in the batch

    torch.manual_seed(args.seed)
    model = sonata.model.PointTransformerV3(**SMALL).eval()
    randomise(model, args.seed)
    # The official GridPooling is built without the model's shuffle_orders, so it keeps its default
    # True and permutes the orders at random after every pooling: the official features of stages
    # 1+ are not deterministic (which order each block attends under changes from run to run). The
    # native model uses the configured order; pin the official run to it.
    for module in model.modules():
        if isinstance(module, sonata.model.GridPooling):
            module.shuffle_orders = False
    with torch.inference_mode():
        point = model({k: v.clone() for k, v in inputs.items()})
        stages = stage_feats(point)
        counts = [s.shape[0] for s in stages]
        for n, k in zip(counts, SMALL["enc_patch_size"]):
            assert n > k and n % k != 0, f"stage with {n} points and patch {k} does not exercise padding"
        per_point = upcast(point)[inputs["inverse"]]
    fixture = dict(
        config=SMALL, state_dict={k: v.clone() for k, v in model.state_dict().items()},
        stages=stages, output=per_point,
        source="facebookresearch/sonata@18c09ff, spconv 2.3.8 CPU, torch " + torch.__version__,
        # no points: the data's terms forbid copying them into the repo. The test rebuilds the crop from
        # ../shared/data and the input from the indices of the points the official grid sampling kept.
        crop=dict(scan=str(Path(args.scan).relative_to(Path(args.scan).parents[1])), size=args.size,
                  digest=crop_digest(raw)),
        kept=kept_points(raw, inputs), inverse=inputs["inverse"],
        input_digest=hashlib.sha256(inputs["grid_coord"].contiguous().numpy().tobytes()
                                    + inputs["feat"].contiguous().numpy().tobytes()).hexdigest(),
    )
    out = REPO / "tests" / "fixtures"
    out.mkdir(parents=True, exist_ok=True)
    torch.save(fixture, out / "sonata_golden.pt")
    print(f"{len(raw['coord'])} points, stage sizes {counts}, output {tuple(per_point.shape)}")

    big = sonata.model.PointTransformerV3(**RELEASED)
    keys = {k: list(v.shape) for k, v in big.state_dict().items()}
    (out / "sonata_keys.json").write_text(json.dumps(
        {"config": RELEASED, "source": "Pointcept configs/sonata/pretrain-sonata-v1m1-0-base.py backbone, "
                                      "built by facebookresearch/sonata@18c09ff", "keys": keys}, indent=0) + "\n")
    print(f"released config: {len(keys)} keys, {sum(v.numel() for v in big.state_dict().values()) / 1e6:.1f} M")


if __name__ == "__main__":
    main()
