"""Genotype: the ordered chain of ``(op, magnitude)`` steps that defines a clip's motion."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Union

from torch import Tensor

from .ops import OPS, Magnitude, check_magnitude

__all__ = ["Genotype", "GenotypeLike"]


class Genotype:
    """An ordered chain of ``(op, magnitude)`` steps; the first step acts on the image first.

    Args:
        steps: ``(name, magnitude)`` pairs. A magnitude is a number or a 0-d tensor; a tensor is kept
            as it is, so gradients reach it through :class:`~img2vid.ImageToVideo`. Ops that take no
            magnitude (``identity``, ``invert`` ...) may be given as a bare name or with ``0``.

    Raises:
        ValueError: an unknown op (the message lists the valid names), a magnitude that is not finite,
            out of the op's range or given to an op that takes none, or an empty chain.

    Examples:
        >>> g = Genotype([("translate_x", 0.1), ("rotate", 10.0)])
        >>> str(g)
        'translate_x:0.1,rotate:10.0'
        >>> Genotype.parse(str(g)) == g
        True
    """

    __slots__ = ("_steps",)

    def __init__(self, steps: str | Iterable[tuple[str, Magnitude] | str]) -> None:
        if isinstance(steps, str):
            steps = Genotype.parse(steps).steps
        parsed: list[tuple[str, Magnitude]] = []
        for step in steps:
            magnitude: Magnitude
            if isinstance(step, str):
                name, magnitude = step, 0.0
            else:
                try:
                    name, magnitude = step
                except (TypeError, ValueError):
                    raise ValueError(f"a genotype step is (op, magnitude) or an op name, got {step!r}") from None
            if not isinstance(name, str):
                raise ValueError(f"op names are strings, got {name!r}")
            check_magnitude(name, magnitude)
            if not isinstance(magnitude, Tensor):
                magnitude = float(magnitude)
            parsed.append((name, magnitude))
        if not parsed:
            raise ValueError("a genotype needs at least one step; use 'identity' for no motion")
        self._steps: tuple[tuple[str, Magnitude], ...] = tuple(parsed)

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Read ``"op:magnitude,op,..."``, e.g. ``"translate_x:0.1,rotate:10"``. Never evaluates code."""
        if not isinstance(text, str):
            raise ValueError(f"Genotype.parse takes a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("empty genotype string; write steps as 'op:magnitude,op,...', e.g. 'identity'")
        steps: list[tuple[str, Magnitude] | str] = []
        for item in text.split(","):
            name, sep, value = (part.strip() for part in item.partition(":"))
            if not name:
                raise ValueError(f"empty step in genotype string {text!r}")
            if not sep:
                steps.append(name)
                continue
            try:
                steps.append((name, float(value)))
            except ValueError:
                raise ValueError(f"magnitude of {name!r} in {text!r} is not a number: {value!r}") from None
        return cls(steps)

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Read what :meth:`to_json` wrote: ``{"steps": [["op", magnitude], ...]}``."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:  # ValueError: bad JSON, or an integer too long to read
            raise ValueError(f"not a genotype JSON document: {error}") from None
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise ValueError('a genotype JSON document is {"steps": [["op", magnitude], ...]}')
        steps = []
        for step in data["steps"]:
            if not (isinstance(step, list) and len(step) == 2 and isinstance(step[1], (int, float))
                    and not isinstance(step[1], bool)):
                raise ValueError(f'each JSON step is ["op", magnitude], got {step!r}')
            steps.append((step[0], step[1]))
        return cls(steps)

    def to_json(self) -> str:
        """A JSON document that :meth:`from_json` reads back to an equal genotype."""
        return json.dumps({"steps": [[name, value] for name, value in self.values()]})

    def values(self) -> list[tuple[str, float]]:
        """The steps with every magnitude as a plain float (tensor values read out)."""
        return [(name, float(m.detach()) if isinstance(m, Tensor) else m) for name, m in self._steps]

    @property
    def steps(self) -> tuple[tuple[str, Magnitude], ...]:
        return self._steps

    @property
    def is_affine(self) -> bool:
        """Whether every step is an affine op (the clip is a pure motion)."""
        return all(OPS[name].kind == "affine" for name, _ in self._steps)

    def __iter__(self) -> Iterator[tuple[str, Magnitude]]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)

    def __getitem__(self, index: int) -> tuple[str, Magnitude]:
        return self._steps[index]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Genotype):
            return NotImplemented
        return self.values() == other.values()

    def __hash__(self) -> int:
        # The op names only: a tensor magnitude is mutable (a search learns it), so a hash of its value
        # would change while the genotype sits in a set or dict. Equal genotypes have equal names.
        return hash(tuple(name for name, _ in self._steps))

    def __str__(self) -> str:
        return ",".join(
            name if not OPS[name].takes_magnitude else f"{name}:{_format(value)}" for name, value in self.values()
        )

    def __repr__(self) -> str:
        return f"Genotype({str(self)!r})"


def _format(value: float) -> str:
    # repr() is the shortest string that parses back to the same float.
    return repr(value) if math.isfinite(value) else str(value)


GenotypeLike = Union[Genotype, str, Iterable[tuple[str, Magnitude]]]


def as_genotype(genotype: GenotypeLike) -> Genotype:
    """A :class:`Genotype` from a genotype, a genotype string or a list of steps."""
    if isinstance(genotype, Genotype):
        return genotype
    if isinstance(genotype, str):
        return Genotype.parse(genotype)
    return Genotype(genotype)
