"""The training configuration, recorded in every training checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .._validate import finite_fields
from .distill import PairConfig


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (module docstring); the checkpoint records them.

    Attributes:
        epochs: passes over the training scenes (one iteration per scene).
        warmup_epochs: linear learning-rate warm-up.
        lr: learning rate of the residual blocks (stem x stem_lr_scale, head x head_lr_scale).
        stem_lr_scale: learning-rate factor of the input layer.
        head_lr_scale: learning-rate factor of the output layer.
        weight_decay: AdamW weight decay.
        min_lr_ratio: the cosine schedule ends at lr x this.
        augment: random rotation and scaling of the training scenes.
        voxel_size: voxel edge in metres; the student runs on this grid at inference too.
        seed: all randomness derives from it.
        pairs: how pairs are drawn.
        semantic_weight: also choose pairs by the lifted features, with this weight (0: teacher only).
        save_every: validate and checkpoint every this many epochs and after the last.
    """

    epochs: int = 100
    warmup_epochs: int = 2
    lr: float = 1e-4
    stem_lr_scale: float = 0.1
    head_lr_scale: float = 5.0
    weight_decay: float = 1e-5
    min_lr_ratio: float = 1e-3
    augment: bool = True
    voxel_size: float = 0.02
    seed: int = 5557
    pairs: PairConfig = field(default_factory=PairConfig)
    semantic_weight: float = 0.0
    save_every: int = 1

    def __post_init__(self) -> None:
        finite_fields(self)
        if self.epochs < 1 or self.warmup_epochs < 0 or self.lr <= 0 or self.voxel_size <= 0 or self.semantic_weight < 0 \
                or self.save_every < 1:
            raise ValueError(f"invalid training config {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        return cls(**{**d, "pairs": PairConfig(**d["pairs"])})
