"""Run configuration as data: nested dataclasses, read from and written to YAML.

A run is described by one :class:`RunConfig` (data, model, training, protocol). Command-line
flags and ``--set section.key=value`` overrides are applied on top of a YAML file, and the
resolved configuration is saved in the run directory, so a run can always be repeated.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mindsight._atomic import atomic_path
from mindsight.embed.base import DEFAULT_IMAGE_MODEL
from mindsight.errors import ConfigError, MissingFileError, UnknownNameError
from mindsight.io.datasets import TEST_SETS  # every dataset's test sets ('small': its default)

PROTOCOLS = ("intra", "loso", "pooled")
TRIAL_MODES = ("averaged", "single", "subsets")
SELECT_BY = ("val_loss", "val_top1")
SCALERS = ("robust", "standard", "whiten", "none")  # mindsight.train.scaler
VAL_SPLITS = ("concepts", "images")
LOGIT_SCALES = ("exp", "raw", "softplus", "unit")  # mindsight.train.losses
TEXT_LOSSES = ("concepts", "clip")
OPTIMIZERS = ("adamw", "adam")


@dataclass
class DataConfig:
    """Where the recordings and images are, and which part of each epoch to use."""

    eeg: str | None = None
    images: str | None = None
    subjects: list[int] = field(default_factory=lambda: [1])
    tmin: float | None = None  # crop window in seconds (None: whole epoch)
    tmax: float | None = None
    channels: list[str] | None = None  # channel subset (None: all)
    train_trials: str = "subsets"  # 'subsets': each time a sample is drawn, the average of a
    #                                random subset of its repetitions; 'averaged'; 'single' trials
    val_fraction: float = 0.1  # share of *training concepts* held out for model selection
    val_split: str = "concepts"  # hold out whole 'concepts' (zero-shot-like) or random 'images' (NICE)
    test_set: str = "small"  # the dataset's test set ('small' = its default); THINGS-MEG: 'small'
    # (200 images × 12 reps) or 'large' (2,400 images); EEG-ImageNet: 'zero-shot' or 'per-image'
    scaler: str = "robust"  # input scaling fitted on training data: robust|standard|whiten|none
    clamp: float | None = 20.0  # clamp scaled inputs at ±clamp (Benchetrit et al.); None: no clamp


@dataclass
class ModelConfig:
    encoder: str = "atm"
    params: dict[str, Any] = field(default_factory=dict)  # the encoder's hyperparameters
    image_model: str = DEFAULT_IMAGE_MODEL
    text_model: str = "auto"  # 'auto': the image model's text tower, else minilm (+ a text head)
    subject_tokens: bool = True  # for encoders with subject tokens (ATM)
    image_views: list[str] = field(default_factory=lambda: ["sharp"])  # views of the image model's
    #                        input (mindsight.embed.views): 'sharp', 'gauss-k21', stacks 'multi-blur', 'ubp'
    extra_image_models: list[str] = field(default_factory=list)  # other image models whose (sharp)
    #                        features join as levels, e.g. [evnet] (seed 003's multiblur-evnet)
    image_side: str = "fixed"  # levels → targets: 'fixed' (first level), 'ubp', 'multiblur'
    image_side_params: dict[str, Any] = field(default_factory=dict)  # its hyperparameters
    modalities: list[str] = field(default_factory=list)  # CogCapPro: [image, text, edge, depth]
    #                        (mindsight.embed.modalities); empty: one target (every other method)
    multimodal: dict[str, Any] = field(default_factory=dict)  # the multimodal head's parameters
    #                        (mindsight.train.multimodal.MultimodalConfig)


@dataclass
class TrainConfig:
    epochs: int = 40
    batch_size: int = 32  # measured on the demo data: README "Published recipes"
    lr: float = 3e-4
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # 'adamw' or 'adam' (NICE)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    drop_last: bool = False  # skip the last, smaller batch of each epoch (ATM's loader does)
    clip_weight: float = 0.9  # λ in λ·CLIP + (1 − λ)·MSE
    mse_weight: float | None = None  # weight of the MSE term; None: 1 − clip_weight
    text_weight: float = 0.1  # weight of the concept-name (text) term; 0 turns it off
    text_loss: str = "concepts"  # 'concepts': classify among the training concept names;
    #                              'clip': InfoNCE with each trial's concept text in the batch (ATM)
    temperature: float = 0.07  # initial softmax temperature of the CLIP loss
    learn_temperature: bool = True
    logit_scale: str = "exp"  # 'exp': logits = exp(s)·cosine (CLIP); 'raw': s·⟨brain, unit image⟩ (ATM)
    normalize_brain: bool = True  # L2-normalise the brain embedding in the CLIP term (ATM: no)
    patience: int | None = 10  # early stopping on the selection metric; None: run all epochs
    select_by: str = "val_loss"  # 'val_loss' or 'val_top1', both on the validation split
    seeds: list[int] = field(default_factory=lambda: [0])
    device: str = "auto"
    checkpoint_seconds: float = 30.0  # write the resumable state at most this often (and at the end)
    precision: str = "auto"  # 'auto' (bf16 autocast + TF32 on GPUs that support it), 'bf16', 'fp32'
    compile: bool = False  # torch.compile the encoder (pays off on GPUs for long runs)


@dataclass
class RunConfig:
    protocol: str = "intra"  # 'intra' (per subject), 'loso' (leave one out), 'pooled' (all subjects)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> RunConfig:
        checks = [
            (self.protocol in PROTOCOLS, f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}"),
            (self.data.train_trials in TRIAL_MODES,
             f"data.train_trials must be one of {TRIAL_MODES}, got {self.data.train_trials!r}"),
            (self.train.select_by in SELECT_BY,
             f"train.select_by must be one of {SELECT_BY}, got {self.train.select_by!r}"),
            (0.0 <= self.train.clip_weight <= 1.0,
             f"train.clip_weight (λ) must be in [0, 1], got {self.train.clip_weight}"),
            (self.train.text_weight >= 0, f"train.text_weight must be >= 0, got {self.train.text_weight}"),
            (self.train.temperature > 0, f"train.temperature must be > 0, got {self.train.temperature}"),
            (self.train.epochs >= 1, f"train.epochs must be >= 1, got {self.train.epochs}"),
            (self.train.batch_size >= 2, f"train.batch_size must be >= 2, got {self.train.batch_size}"),
            (0.0 < self.data.val_fraction < 1.0,
             f"data.val_fraction must be in (0, 1), got {self.data.val_fraction}"),
            (self.data.test_set in TEST_SETS,
             f"data.test_set must be one of {TEST_SETS}, got {self.data.test_set!r}"),
            (self.data.scaler in SCALERS,
             f"data.scaler must be one of {SCALERS}, got {self.data.scaler!r}"),
            (self.data.clamp is None or self.data.clamp > 0,
             f"data.clamp must be > 0 or null, got {self.data.clamp}"),
            (self.data.val_split in VAL_SPLITS,
             f"data.val_split must be one of {VAL_SPLITS}, got {self.data.val_split!r}"),
            (self.train.logit_scale in LOGIT_SCALES,
             f"train.logit_scale must be one of {LOGIT_SCALES}, got {self.train.logit_scale!r}"),
            (self.train.text_loss in TEXT_LOSSES,
             f"train.text_loss must be one of {TEXT_LOSSES}, got {self.train.text_loss!r}"),
            (self.train.optimizer in OPTIMIZERS,
             f"train.optimizer must be one of {OPTIMIZERS}, got {self.train.optimizer!r}"),
            (len(self.train.betas) == 2 and all(0 <= b < 1 for b in self.train.betas),
             f"train.betas must be two numbers in [0, 1), got {self.train.betas}"),
            (self.train.mse_weight is None or self.train.mse_weight >= 0,
             f"train.mse_weight must be >= 0 or null, got {self.train.mse_weight}"),
            (len(self.train.seeds) >= 1, "train.seeds must list at least one seed"),
            (self.train.checkpoint_seconds >= 0,
             f"train.checkpoint_seconds must be >= 0, got {self.train.checkpoint_seconds}"),
            (len(self.data.subjects) >= 1, "data.subjects must list at least one subject"),
            (len(self.model.image_views) >= 1, "model.image_views must list at least one view"),
            (self.protocol != "loso" or len(set(self.data.subjects)) >= 2,
             "protocol 'loso' needs at least two subjects"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"config: {message}")
        self._validate_modalities()
        return self

    def _validate_modalities(self) -> None:
        """A multimodal model (``model.modalities``) aligns each modality with its own targets and
        has its own text space (the text modality), so it refuses another image side and the
        concept-name text term; ``model.multimodal`` is checked key by key."""
        m = self.model
        if not m.modalities:
            if m.multimodal:
                raise ConfigError("config: model.multimodal is set but model.modalities is empty; "
                                  "list the modalities (e.g. [image, text, edge, depth]) or remove it")
            return
        if not isinstance(m.modalities, list) or not all(isinstance(n, str) for n in m.modalities):
            raise ConfigError(f"config: model.modalities must be a list of names (e.g. [image, text, "
                              f"edge, depth]), got {m.modalities!r}")
        if len(set(m.modalities)) != len(m.modalities):
            raise ConfigError(f"config: model.modalities lists a modality twice: {m.modalities}")
        if m.image_side != "fixed":
            raise ConfigError(f"config: model.modalities gives each modality its own targets (blur "
                              f"levels with model.multimodal.uncertainty); model.image_side must be "
                              f"'fixed', got {m.image_side!r}")
        if self.train.text_weight > 0:
            raise ConfigError(f"config: train.text_weight is {self.train.text_weight} but a "
                              "multimodal model has no concept-name text term (add 'text' to "
                              "model.modalities for a text space); set train.text_weight: 0")
        from mindsight.train.multimodal import multimodal_config  # needs torch: imported when used

        multimodal_config(m.multimodal, m.modalities)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        return build_dataclass(cls, raw or {}, source).validate()

    @classmethod
    def load(cls, path: str | os.PathLike) -> RunConfig:
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(raw, str(path))

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    def override(self, assignments: list[str]) -> RunConfig:
        """Apply ``section.key=value`` strings (values parsed as YAML: 1e-3, [1, 2], null)."""
        raw = self.to_dict()
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            node = raw
            *parents, leaf = key.strip().split(".")
            for p in parents:
                if not isinstance(node.get(p), dict):
                    raise ConfigError(f"override {item!r}: {p!r} is not a config section")
                node = node[p]
            node[leaf] = yaml.safe_load(value)
        return RunConfig.from_dict(raw, "override")


PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs"  # the repository's configs/


def load_preset(name: str) -> RunConfig:
    """The published recipe ``configs/<name>.yaml`` (``atm``, ``nice``, ``ubp``, ``multiblur``,
    ...); an unknown name lists the presets there."""
    path = PRESETS_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise UnknownNameError(f"no preset {name!r} in {PRESETS_DIR}; available: {', '.join(known) or 'none'}")
    return RunConfig.load(path)


def build_dataclass(cls: type, raw: dict[str, Any], where: str) -> Any:
    """``cls(**raw)`` for a configuration dataclass, refusing unknown keys in one line (naming
    ``where`` and the valid keys) and reading numbers written as text as the field's type."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} in {cls.__name__}; "
            f"valid keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in raw.items():
        sub = _SECTIONS.get((cls, name))
        kwargs[name] = (build_dataclass(sub, value, f"{where}:{name}") if sub
                        else _coerce(value, str(fields[name].type), f"{where}:{name}"))
    return cls(**kwargs)


def _coerce(value: Any, annotation: str, where: str) -> Any:
    """YAML reads ``1e-3`` as a string; turn numbers written as text into the field's type."""
    if annotation.startswith("float") and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if annotation.startswith("int") and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if annotation.startswith("list[int]") and isinstance(value, int) and not isinstance(value, bool):
        return [value]
    return value


_SECTIONS = {(RunConfig, "data"): DataConfig, (RunConfig, "model"): ModelConfig,
             (RunConfig, "train"): TrainConfig}
