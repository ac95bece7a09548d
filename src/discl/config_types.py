"""The value types of the configuration: each says what a field accepts, so a bad setting fails at load.

Numbers are strict (a YAML ``yes`` is not 1, ``2.7`` is not an int, NaN and infinity are not numbers);
strings are strict (``123`` is not a name). Ranges and choices come from pydantic's ``Field`` and
``Literal``; the few rules pydantic has no word for are small ``AfterValidator`` checks whose error
says what is allowed.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, Strict

#: Every section: unknown keys are errors; NaN and infinity are never numbers.
SECTION = ConfigDict(extra="forbid", allow_inf_nan=False)

Int = Annotated[int, Strict()]
Count = Annotated[int, Strict(), Field(ge=0)]
Positive = Annotated[int, Strict(), Field(ge=1)]
Float = Annotated[float, Strict()]
NonNegative = Annotated[float, Strict(), Field(ge=0)]
PositiveFloat = Annotated[float, Strict(), Field(gt=0)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1)]  # a probability or a share of something
PositiveFraction = Annotated[float, Strict(), Field(gt=0, le=1)]
Cosine = Annotated[float, Strict(), Field(ge=-1, le=1)]  # a cosine similarity
Level = Annotated[int, Strict(), Field(ge=0, le=100)]  # image guidance in percent
Text = Annotated[str, Strict()]
Name = Annotated[str, Strict(), Field(min_length=1)]
Flag = Annotated[bool, Strict()]


class Invalid(ValueError):
    """A rule across fields broken: names the field (relative to the section), its value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        super().__init__(f"{field} = {value!r}: {allowed}")
        self.field, self.value, self.allowed = field, value, allowed


def _rule(ok, allowed: str, doc: str | None = None):
    def check(value):
        if not ok(value):
            raise ValueError(allowed)
        return value

    # What docs/config.md says (scripts/config_doc.py reads it): an attribute of the function, hence the ignore.
    check.allowed = doc or allowed.removeprefix("must be ")  # type: ignore[attr-defined]
    return AfterValidator(check)


def _unique(values: list) -> bool:
    return len(set(values)) == len(values)


def _placeholders(*names: str):
    """Templates filled with str.format(name=..., ...): only these placeholders, braces balanced."""
    listed = " and ".join("{" + n + "}" for n in names)

    def ok(template: str) -> bool:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError:  # an unbalanced brace
            return False
        return all(f in names for f in fields)

    return _rule(ok, f"must be a template whose only placeholders are {listed} (write {{{{ and }}}} for a brace)", f"placeholders {listed}")


# Where a model runs. Training and scoring also accept "auto" (CUDA when available, else the CPU).
_DEVICE = re.compile(r"(auto|cpu|mps|cuda(:\d+)?)")
Device = Annotated[str, Strict(), _rule(lambda d: _DEVICE.fullmatch(d) is not None, "must be auto, cpu, cuda, cuda:N or mps")]
PipelineDevice = Annotated[str, Strict(), _rule(lambda d: d != "auto" and _DEVICE.fullmatch(d) is not None, "must be cpu, cuda, cuda:N or mps")]

NonEmpty = Field(min_length=1)
Unique = _rule(_unique, "must not repeat a value", "no repeats")
Pair = Field(min_length=2, max_length=2)
Triple = Field(min_length=3, max_length=3)
TemplateName = Annotated[str, Strict(), _placeholders("name")]
TemplateDescription = Annotated[str, Strict(), _placeholders("name", "description")]
Url = Annotated[str, Strict(), _rule(lambda u: u.startswith(("http://", "https://")), "must be an http:// or https:// address")]
Channels = Annotated[int, Strict(), _rule(lambda c: c in (1, 3), "must be 1 (grey) or 3 (colour)")]
