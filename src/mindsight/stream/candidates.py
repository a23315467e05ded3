"""The images a live prediction is ranked against, embedded once at start.

By default the run's test images (the zero-shot candidates of its evaluation, so a marker code
``c`` of a THINGS-EEG2 test recording names candidate ``c - 1``); or any folder of images,
embedded through the run's image model, views and image side exactly as the test images are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mindsight.errors import MissingFileError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class Candidates:
    """``targets[i]`` (unit norm) is candidate ``i``, an image at ``paths[i]`` called ``names[i]``.
    ``codes`` maps a stimulus code to the candidate it shows (empty: unknown)."""

    names: list[str]
    paths: list[Path]
    targets: torch.Tensor
    source: str
    codes: dict[int, int]

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_run(cls, run: Any, fold: Any) -> Candidates:
        """The run's test images; code ``c`` (1-based image condition) → candidate ``c - 1``."""
        part = run.images["test"]
        names = [part.concept_names[c] for c in part.concept]
        targets = F.normalize(run.image_targets(fold).float(), dim=1).cpu()
        return cls(names, part.paths, targets, f"the run's {len(part)} test images",
                   {i + 1: i for i in range(len(part))})

    @classmethod
    def from_folder(cls, run: Any, fold: Any, folder: str | Path) -> Candidates:
        """Every image under ``folder`` (sorted), named by its file stem; no code is known."""
        from mindsight.embed.features import level_tables
        from mindsight.io.images import ImagePartition

        folder = Path(folder)
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise MissingFileError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) to rank against")
        part = ImagePartition(name="candidates", root=folder, files=tuple(files),
                              concept=np.arange(len(files)),
                              concept_folders=tuple(Path(f).stem for f in files))
        model = run.model(fold)
        tables = level_tables(part, model.spec.level_list(), cache_dir=run.cache_dir, device=run.device)
        levels = [torch.from_numpy(t.features).to(run.device) for t in tables]
        targets = F.normalize(model.image_table(levels).float(), dim=1).cpu()
        return cls([Path(f).stem.replace("_", " ") for f in files], part.paths, targets,
                   f"{len(files)} images of {folder}", {})
