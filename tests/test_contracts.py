"""The contracts of the registered extensions: brain encoders, image sides and image views.

Every registered class keeps its base's contract; a class breaking it (a capability not stated,
or stated but not kept) fails when it is registered, i.e. at import; and every encoder builds for
THINGS-EEG2's shape and keeps what its capabilities promise.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from mindsight.embed.views import VIEWS, ImageView, get_view
from mindsight.encoders import ENCODERS, FIT_PARAMETERS, BrainEncoder, build_encoder, encoder_names
from mindsight.errors import ContractError, UnknownNameError
from mindsight.io.things_eeg2 import CH_NAMES_63
from mindsight.registry import Registry
from mindsight.train.image_side import IMAGE_SIDES, ImageSide, build_image_side

pytestmark = pytest.mark.usefixtures("one_thread")

REGISTRIES = [(ENCODERS, BrainEncoder), (IMAGE_SIDES, ImageSide), (VIEWS, ImageView)]
N_CHANS, N_TIMES, SFREQ, N_OUTPUTS = 63, 250, 250.0, 128


@pytest.mark.parametrize("registry, base", REGISTRIES, ids=lambda r: getattr(r, "kind", None))
def test_every_registered_class_keeps_its_contract(registry, base):
    assert len(registry) >= 3 and registry.base is base
    for entry in registry:
        assert issubclass(entry.factory, base), entry.name
        entry.factory.check_contract()
        assert entry.description, entry.name  # `mindsight models` lists it
        for name in base.declares:
            assert getattr(entry.factory, name) is not None, (entry.name, name)


# --- brain encoders --------------------------------------------------------------------------------

def _encoder(name: str) -> BrainEncoder:
    cls = ENCODERS.get(name)
    torch.manual_seed(0)
    return build_encoder(name, n_chans=N_CHANS, n_times=N_TIMES, sfreq=SFREQ, n_outputs=N_OUTPUTS,
                         **({"ch_names": CH_NAMES_63} if cls.needs_ch_names else {}),
                         **({"n_subjects": 2} if cls.subject_layers else {}))


@pytest.mark.parametrize("name", encoder_names())
def test_every_encoder_builds_for_63_channels_and_keeps_its_capabilities(name):
    enc = _encoder(name).eval()
    assert (enc.n_chans, enc.n_times, enc.sfreq, enc.n_outputs) == (N_CHANS, N_TIMES, SFREQ, N_OUTPUTS)
    x = torch.randn(3, N_CHANS, N_TIMES)
    with torch.no_grad():
        out = enc(x)
    assert out.shape == (3, N_OUTPUTS) and torch.isfinite(out).all()
    assert enc.get_output_shape() == (1, N_OUTPUTS) and not enc.training  # mode kept
    if enc.subject_layers:  # subjects select their own parameters; -1 is the subjects' mean
        with torch.no_grad():
            mine, unknown = enc(x, torch.tensor([0, 1, 1])), enc(x, torch.tensor([-1, -1, -1]))
        assert not torch.allclose(mine, unknown, atol=1e-5)
        assert torch.allclose(unknown, out, atol=1e-5)
    if enc.two_heads:
        with torch.no_grad():
            clip, mse = enc.forward_heads(x)
        assert torch.allclose(clip, out, atol=1e-5) and mse.shape == out.shape
        assert not torch.allclose(clip, mse)
    if enc.closed_form:
        _check_closed_form_fit(enc)


def _check_closed_form_fit(enc: BrainEncoder) -> None:
    """``fit`` returns a score per candidate and leaves the encoder at the best one, named by
    ``selects``; the fitted encoder predicts the training map it was fitted on."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(N_CHANS * N_TIMES, N_OUTPUTS, generator=g) / 100
    x = torch.randn(60, N_CHANS, N_TIMES, generator=g)
    y = x.flatten(1) @ w
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    scores = enc.fit(x[:40], y[:40], x[40:], y[40:], lambda p, t: -float((p - t).pow(2).mean()))
    best = max(scores, key=scores.get)  # the first of equal scores, as fit keeps
    assert float(getattr(enc, enc.selects)) == pytest.approx(best, rel=1e-6) and len(scores) > 1
    assert any(not torch.equal(before[k], v) for k, v in enc.state_dict().items()
               if not before[k].isnan().all())
    with torch.no_grad():
        fitted = enc(x[:40])
    assert float(torch.corrcoef(torch.stack([fitted.flatten(), y[:40].flatten()]))[0, 1]) > 0.9


def test_capabilities_select_encoders_and_helpers_read_them():
    assert encoder_names(closed_form=True) == ["ridge"]
    assert encoder_names(two_heads=True) == ["brainmodule"]
    assert encoder_names(needs_ch_names=True) == ["brainmodule", "labram"]
    assert set(encoder_names(subject_layers=True)) == {"atm", "brainmodule"}
    with pytest.raises(UnknownNameError, match="unknown encoder capability subjects; available: "
                                               "closed_form"):
        encoder_names(subjects=True)
    with pytest.raises(NotImplementedError, match="gradient descent"):
        _encoder("nice").fit(*[torch.zeros(1)] * 4, score=lambda p, t: 0.0)


class _Plain(BrainEncoder):
    """A minimal encoder body the failing classes below differ from in one thing."""

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int) -> None:
        super().__init__(n_chans, n_times, sfreq, n_outputs)
        self.linear = torch.nn.Linear(n_chans * n_times, n_outputs)

    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x.flatten(1))


NONE = {"closed_form": False, "needs_ch_names": False, "subject_layers": False, "two_heads": False}


def _fit(self, x, y, x_val, y_val, score):
    self.alpha = 1.0
    return {1.0: score(self(x_val), y_val)}


def _fit_other_order(self, x, x_val, y, y_val, score):
    return {}


def _forward_heads(self, x, subject=None):
    return self(x), self(x)


def _init_taking_ch_names(self, n_chans, n_times, sfreq, n_outputs, *, ch_names=None):
    _Plain.__init__(self, n_chans, n_times, sfreq, n_outputs)


def _init_taking_n_subjects(self, n_chans, n_times, sfreq, n_outputs, *, n_subjects=0):
    _Plain.__init__(self, n_chans, n_times, sfreq, n_outputs)


def _forward_without_subject(self, x):
    return self.linear(x.flatten(1))


@pytest.mark.parametrize("body, message", [
    ({"needs_ch_names": False, "subject_layers": False, "two_heads": False},
     "does not declare closed_form"),
    ({**NONE, "two_heads": None}, "does not declare two_heads"),
    ({**NONE, "closed_form": "no"}, "closed_form must be True or False"),
    ({**NONE, "closed_form": True}, "declares closed_form = True but it does not override fit"),
    ({**NONE, "closed_form": True, "selects": "alpha", "fit": _fit_other_order},
     r"fit takes \(x, x_val, y, y_val, score\); a closed-form encoder's fit takes \(x, y, x_val"),
    ({**NONE, "closed_form": True, "fit": _fit}, "does not name in selects"),
    ({**NONE, "fit": _fit}, "declares closed_form = False but it overrides fit"),
    ({**NONE, "two_heads": True}, "declares two_heads = True but it does not define forward_heads"),
    ({**NONE, "forward_heads": _forward_heads}, "declares two_heads = False but it defines forward_heads"),
    ({**NONE, "needs_ch_names": True}, "needs_ch_names = True but its __init__ has no ch_names"),
    ({**NONE, "__init__": _init_taking_ch_names}, "needs_ch_names = False but its __init__ takes ch_names"),
    ({**NONE, "subject_layers": True}, "subject_layers = True but its __init__ has no n_subjects"),
    ({**NONE, "__init__": _init_taking_n_subjects}, "subject_layers = False but its __init__ takes n_subjects"),
    ({**NONE, "forward": _forward_without_subject}, r"forward takes \(x\); every brain encoder's forward"),
])
def test_an_encoder_breaking_its_contract_fails_at_registration(body, message):
    cls = type(_Plain)("Broken", (_Plain,), {"__module__": __name__, **body})
    with pytest.raises(ContractError, match=message):
        ENCODERS.register("broken")(cls)
    assert "broken" not in ENCODERS
    # the same class, with its capabilities stated and kept, registers (in a registry of its own)
    fixed = type(_Plain)("Fixed", (_Plain,), {"__module__": __name__, **NONE})
    own: Registry[BrainEncoder] = Registry("brain encoder", base=BrainEncoder)
    own.register("fixed")(fixed)
    assert own.build("fixed", n_chans=2, n_times=3, sfreq=1.0, n_outputs=4).get_output_shape() == (1, 4)


def test_an_encoder_without_forward_or_base_fails_at_registration():
    with pytest.raises(ContractError, match="does not implement forward"):
        @ENCODERS.register("no-forward")
        class NoForward(BrainEncoder):
            closed_form = needs_ch_names = subject_layers = two_heads = False
    with pytest.raises(ContractError, match="not a subclass of BrainEncoder"):
        ENCODERS.register("module")(torch.nn.Linear)
    assert "no-forward" not in ENCODERS and "module" not in ENCODERS
    assert FIT_PARAMETERS == ("x", "y", "x_val", "y_val", "score")


def test_a_braindecode_wrapper_must_name_its_model():
    from mindsight.encoders.zoo import BraindecodeEncoder

    with pytest.raises(ContractError, match="does not declare braindecode_class"):
        ENCODERS.register("nameless")(type(BraindecodeEncoder)("Nameless", (BraindecodeEncoder,), {}))


# --- image sides -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", IMAGE_SIDES.names())
def test_every_image_side_maps_levels_to_targets(name):
    torch.manual_seed(0)
    side = build_image_side(name, [16, 16, 16], 16, n_pairs=8)
    levels = [torch.randn(8, 16) for _ in range(3)]
    assert side.eval()(levels).shape == (8, 16)
    assert side.train().train_targets(levels, torch.arange(8)).shape == (8, 16)
    assert side.learned == any(p.requires_grad for p in side.parameters())


def test_an_image_side_breaking_its_contract_fails_at_registration():
    def forward(self, levels):
        return levels[0]

    def observe(self, pairs, logits):
        pass

    own: Registry[ImageSide] = Registry("image side", base=ImageSide)
    cases = [({"forward": forward, "learned": False}, "does not declare observes"),
             ({"forward": forward, "learned": 0, "observes": False}, "learned must be True or False"),
             ({"forward": forward, "learned": False, "observes": True},
              "observes = True but does not override observe"),
             ({"forward": forward, "learned": False, "observes": False, "observe": observe},
              "observes = False but overrides observe"),
             ({"learned": False, "observes": False}, "does not implement forward")]
    for body, message in cases:
        with pytest.raises(ContractError, match=message):
            own.register("broken")(type(ImageSide)("Broken", (ImageSide,), body))
    own.register("ok")(type(ImageSide)("Ok", (ImageSide,), {"forward": forward, "learned": False,
                                                             "observes": False}))
    assert own.names() == ["ok"]


# --- image views -----------------------------------------------------------------------------------

def _picture():
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))


@pytest.mark.parametrize("name, family", [("sharp", "sharp"), ("blur-3", "blur"),
                                          ("gauss-k9", "gauss"), ("foveated-k21", "foveated")])
def test_every_view_family_is_named_canonically_and_transforms_pixels(name, family):
    assert set(VIEWS.names()) == {"sharp", "blur", "gauss", "foveated", "edge", "depth"}
    view = get_view(name)
    assert isinstance(view, VIEWS.get(family)) and view.name == name == get_view(view.name).name
    out = view(_picture())
    if view.is_identity:
        assert out is not None and np.array_equal(np.asarray(out), np.asarray(_picture()))
    else:
        assert out.size == (224, 224) and view.transform(_picture()).size == (224, 224)


def test_a_view_breaking_its_contract_fails_at_registration():
    def transform(self, image):
        return image

    own: Registry[ImageView] = Registry("image view", base=ImageView)
    cases = [({"transform": transform, "pattern": "x"}, "does not declare example"),
             ({"transform": transform, "pattern": "x(", "example": "x"}, "not a regular expression"),
             ({"transform": transform, "pattern": r"x-(\d+)", "example": "x-N",
               "__init__": lambda self: None}, r"has 1 group\(s\) but the constructor takes \(\)"),
             ({"pattern": "x", "example": "x"}, "does not implement transform")]
    for body, message in cases:
        with pytest.raises(ContractError, match=message):
            own.register("broken")(type(ImageView)("Broken", (ImageView,), body))

    class Inverted(ImageView):
        pattern: ClassVar[str] = "inverted"
        example: ClassVar[str] = "inverted"

        def __init__(self) -> None:
            super().__init__("inverted", "the picture's negative")

        def transform(self, image):
            from PIL import ImageOps

            return ImageOps.invert(image.convert("RGB"))

    own.register("inverted")(Inverted)
    assert np.asarray(Inverted()(_picture())).sum() != np.asarray(_picture()).sum()
