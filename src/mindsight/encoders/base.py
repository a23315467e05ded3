"""The brain-encoder contract (:class:`BrainEncoder`), its registry and the one way to build an
encoder from its name.

Every encoder is a :class:`BrainEncoder` subclass registered with one line,
``@ENCODERS.register("name", description=...)``. The class states its capabilities as class
attributes (``closed_form``, ``needs_ch_names``, ``subject_layers``, ``two_heads``) and the
registry checks, when the module is imported, that they are stated and that the class keeps
what they promise (:meth:`BrainEncoder.check_contract`), so training code reads the
capabilities instead of probing the object.
"""

from __future__ import annotations

import abc
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from mindsight.errors import ConfigError, ContractError, DataFormatError, UnknownNameError
from mindsight.registry import Contract, Registry

#: The parameters of :meth:`BrainEncoder.fit`, in order; a closed-form encoder's ``fit`` takes
#: exactly these.
FIT_PARAMETERS = ("x", "y", "x_val", "y_val", "score")

#: ``score(prediction, y_val) -> float``, higher is better.
ScoreFn = Callable[[torch.Tensor, torch.Tensor], float]


def param_groups_with_rest(groups: list[dict[str, Any]], module: nn.Module) -> list[dict[str, Any]]:
    """``groups`` (parameter groups of some of ``module``'s parameters) and one more group of its
    other trainable parameters; one plain group of all of them, in ``module.parameters()`` order,
    when no group overrides anything (the default :meth:`BrainEncoder.param_groups`)."""
    if all(set(g) == {"params"} for g in groups):
        return [{"params": [p for p in module.parameters() if p.requires_grad]}]
    mine = {id(p) for g in groups for p in g["params"]}
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in mine]
    return [g for g in groups if g["params"]] + ([{"params": rest}] if rest else [])


class BrainEncoder(nn.Module, Contract, metaclass=abc.ABCMeta):
    """EEG/MEG epochs (batch, n_chans, n_times) → embeddings (batch, n_outputs).

    As braindecode's ``EEGModuleMixin``, an encoder is built for one input and output shape,
    ``(n_chans, n_times, sfreq, n_outputs, *, hyperparameters...)``, and keeps them as
    attributes (:meth:`get_output_shape` computes the output shape). ``forward(x, subject=None)``
    takes optional subject indices (one per trial, -1 for a subject without its own layer).

    Capabilities every registered subclass states (class attributes, checked at registration):

    - ``closed_form``: fitted by :meth:`fit` in closed form instead of by gradient descent;
      such an encoder overrides ``fit`` (signature :data:`FIT_PARAMETERS`) and names in
      ``selects`` the hyperparameter ``fit`` chooses on the validation split;
    - ``needs_ch_names``: takes the channel names (``ch_names=``, e.g. for sensor positions);
      exactly the encoders whose ``__init__`` has a ``ch_names`` parameter;
    - ``subject_layers``: has per-subject parameters (``n_subjects=``) that ``forward`` selects
      with ``subject``; exactly the encoders whose ``__init__`` has ``n_subjects``;
    - ``two_heads``: has a separate MSE head besides the CLIP head ``forward`` returns, read by
      ``forward_heads(x, subject) -> (clip, mse)``; exactly the encoders defining it.

    Optional: ``pretrained_option`` names the hyperparameter that loads pretrained weights when
    the encoder is built (labram's ``weights``). A trained model rebuilt from its own saved
    weights (:func:`mindsight.run.load_model`) is built without it, so evaluating a run neither
    reads the pretrained file again nor needs it to still exist.
    """

    declares: ClassVar[tuple[str, ...]] = ("closed_form", "needs_ch_names", "subject_layers",
                                           "two_heads")
    closed_form: ClassVar[bool | None] = None
    needs_ch_names: ClassVar[bool | None] = None
    subject_layers: ClassVar[bool | None] = None
    two_heads: ClassVar[bool | None] = None
    selects: ClassVar[str | None] = None  # closed form: the attribute ``fit`` sets to its choice
    pretrained_option: ClassVar[str | None] = None  # the hyperparameter naming a pretrained file

    def __init__(self, n_chans: int, n_times: int, sfreq: float, n_outputs: int, *,
                 ch_names: Sequence[str] | None = None, n_subjects: int = 0) -> None:
        super().__init__()
        self.n_chans, self.n_times, self.n_outputs = int(n_chans), int(n_times), int(n_outputs)
        self.sfreq = float(sfreq)
        self.ch_names = list(ch_names) if ch_names is not None else None
        self.n_subjects = int(n_subjects)

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, n_chans, n_times) epochs, optional (batch,) subject indices → (batch,
        n_outputs) embeddings."""

    def fit(self, x: torch.Tensor, y: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
            score: ScoreFn) -> dict[float, float]:
        """Fit a closed-form encoder (``closed_form = True``) instead of training it.

        - ``x``: (n, n_chans, n_times) training epochs, as ``forward`` receives them (already
          through the model's input scaler); ``y``: (n, n_outputs) the embedding each should
          map to;
        - ``x_val``, ``y_val``: the validation split in the same layout, for choosing the
          encoder's own hyperparameter (named by ``selects``, e.g. ridge's ``alpha``);
        - ``score(prediction, y_val) -> float``: higher is better (training passes validation
          top-1 retrieval).

        Must leave the parameters and buffers at the chosen solution (``forward`` predicts
        with it and ``state_dict`` saves it) and set the attribute named by ``selects`` to the
        chosen value (training records it in fold.json). Returns the validation score of every
        candidate value tried.
        """
        raise NotImplementedError(
            f"{type(self).__name__} is trained by gradient descent (closed_form = False); it has "
            "no closed-form fit")

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """The optimiser's parameter groups for this encoder's trainable parameters at base
        learning rate ``lr``: dicts as ``torch.optim`` takes them (``params``, and optionally
        ``lr``, ``weight_decay``; a missing key takes the optimiser's value).

        The default is one group of every trainable parameter with nothing overridden, and then
        training builds exactly the optimiser it builds for any model. An encoder overrides it
        for per-layer learning rates (LaBraM's layer-wise decay) or weight-decay exemptions.
        """
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    @torch.no_grad()
    def get_output_shape(self) -> tuple[int, ...]:
        """The output shape of one epoch, ``(1, n_outputs)``, computed by a forward pass of a
        zero epoch in eval mode (as braindecode's ``get_output_shape``)."""
        ref = next(self.parameters(), None)
        if ref is None:
            ref = next(self.buffers(), torch.zeros(()))
        was = self.training
        self.eval()
        try:
            out = self(torch.zeros(1, self.n_chans, self.n_times, dtype=ref.dtype, device=ref.device))
        finally:
            self.train(was)
        return tuple(out.shape)

    @classmethod
    def check_contract(cls) -> None:
        """Beyond stating the capabilities: they are booleans and the class keeps them (see
        the class doc); raises :class:`ContractError` naming what is wrong."""
        super().check_contract()
        where = f"{cls.__module__}.{cls.__qualname__}"
        for name in BrainEncoder.declares:
            if not isinstance(getattr(cls, name), bool):
                raise ContractError(f"{where}: {name} must be True or False, got "
                                    f"{getattr(cls, name)!r}")
        forward = list(inspect.signature(cls.forward).parameters)
        if forward[1:3] != ["x", "subject"]:
            raise ContractError(f"{where}.forward takes ({', '.join(forward[1:])}); every brain "
                                "encoder's forward takes (x, subject=None)")
        init = inspect.signature(cls.__init__).parameters
        _check_match(where, "needs_ch_names", cls.needs_ch_names, "ch_names" in init,
                     "its __init__ takes ch_names", "its __init__ has no ch_names parameter")
        _check_match(where, "subject_layers", cls.subject_layers, "n_subjects" in init,
                     "its __init__ takes n_subjects", "its __init__ has no n_subjects parameter")
        _check_match(where, "two_heads", cls.two_heads, callable(getattr(cls, "forward_heads", None)),
                     "it defines forward_heads", "it does not define forward_heads(x, subject)")
        _check_match(where, "closed_form", cls.closed_form, cls.fit is not BrainEncoder.fit,
                     "it overrides fit", "it does not override fit")
        if cls.closed_form:
            params = tuple(inspect.signature(cls.fit).parameters)[1:]
            if params != FIT_PARAMETERS:
                raise ContractError(f"{where}.fit takes ({', '.join(params)}); a closed-form "
                                    f"encoder's fit takes ({', '.join(FIT_PARAMETERS)})")
            if not (isinstance(cls.selects, str) and cls.selects):
                raise ContractError(f"{where} is closed form but does not name in selects the "
                                    "hyperparameter its fit chooses (e.g. selects = 'alpha')")


def _check_match(where: str, name: str, declared: bool, has: bool, has_it: str,
                 lacks_it: str) -> None:
    """A declared capability and what the class has must agree: a capability without its
    member would fail mid-run, a member without its capability would never be used."""
    if declared != has:
        raise ContractError(f"{where} declares {name} = {declared} but {has_it if has else lacks_it}")


ENCODERS: Registry[BrainEncoder] = Registry("brain encoder", base=BrainEncoder)


def build_encoder(
    name: str, *, n_chans: int, n_times: int, sfreq: float, n_outputs: int, **params: Any
) -> BrainEncoder:
    """Build encoder ``name`` for epochs of ``n_chans`` × ``n_times`` at ``sfreq`` Hz.

    ``params`` are the encoder's own hyperparameters (see ``mindsight models``); an unknown
    name lists the available ones.
    """
    for key, value in {"n_chans": n_chans, "n_times": n_times, "n_outputs": n_outputs}.items():
        if int(value) < 1:
            raise DataFormatError(f"encoder {name!r}: {key} must be >= 1, got {value}")
    cls = ENCODERS.get(name)
    _check_types(name, cls, params)
    try:
        return cls(n_chans=int(n_chans), n_times=int(n_times), sfreq=float(sfreq),
                   n_outputs=int(n_outputs), **params)
    except TypeError as exc:
        if not _raised_by_the_call(exc):
            raise  # a TypeError inside a constructor is a bug to see, not the user's parameters
        raise ConfigError(f"encoder {name!r}: bad hyperparameters {params} ({exc})") from None


def _check_types(name: str, cls: type, params: dict[str, Any]) -> None:
    """Refuse hyperparameters whose value does not have the type the encoder's constructor
    annotates, e.g. ``d_model: 'wide'`` for an int."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # unresolvable annotations: nothing to check against
        return
    for key, value in params.items():
        hint = hints.get(key)
        allowed = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        plain = [t for t in allowed if t in (int, float, str, bool, type(None))]
        if not plain or len(plain) != len(allowed):
            continue  # only simple annotations are checked
        ok = any(isinstance(value, t) and not (t is int and isinstance(value, bool)) for t in plain)
        ok = ok or (float in plain and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in plain)
            raise ConfigError(
                f"encoder {name!r}: hyperparameter {key!r} must be {names}, got {value!r}")


def _raised_by_the_call(exc: TypeError) -> bool:
    """Whether ``exc`` was raised by calling a constructor with arguments it does not take
    (unknown, missing or repeated keywords): then the innermost frame of the traceback is still
    the caller's, since the callee's body never started."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    frame = tb.tb_frame
    module = frame.f_globals.get("__name__", "")
    return module.startswith("mindsight.encoders") and not frame.f_code.co_name == "__init__"


def encoder_names(**capabilities: bool) -> list[str]:
    """Registered encoder names, optionally only those with the given capabilities
    (``encoder_names(closed_form=True)``)."""
    unknown = sorted(set(capabilities) - set(BrainEncoder.declares))
    if unknown:
        raise UnknownNameError(f"unknown encoder capability {', '.join(unknown)}; available: "
                               f"{', '.join(BrainEncoder.declares)}")
    return [e.name for e in ENCODERS
            if all(getattr(e.factory, k) == v for k, v in capabilities.items())]


def is_closed_form(name: str) -> bool:
    """True for encoders fitted in closed form (ridge) rather than by gradient descent."""
    return bool(ENCODERS.get(name).closed_form)


def needs_ch_names(name: str) -> bool:
    """True for encoders that take the channel names (``ch_names=``), e.g. for sensor positions."""
    return bool(ENCODERS.get(name).needs_ch_names)


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
