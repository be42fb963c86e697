"""Declared notebook parameters: type, range and allowed values, checked before anything runs.

Each paper module declares ``PARAMETERS = Schema(name=Spec, ...)``. `python -m kitlib reproduce` checks the
notebook's defaults + profile + ``-p`` overrides against it and exits 2 naming the culprit; the notebook's
first cell checks the same values again (for JupyterLab users) and gets them back normalised:

    params = pi.PARAMETERS.check(globals())   # only the declared names are read
    globals().update(params)

Normalisation: an int is accepted where a float is expected; a single value where a list is expected is a
one-item list; a scalar where a per-dataset or per-backbone mapping is expected (`PerKey`) applies to every
key, and a key without an entry gets the declared fallback.
"""
from __future__ import annotations

import re
from collections.abc import Mapping


class ParameterError(ValueError):
    """A notebook parameter has the wrong type, range or value; the message names it."""


def _show(value) -> str:
    text = repr(value)
    return (text if len(text) <= 80 else text[:77] + "...") + f" ({type(value).__name__})"


class Spec:
    """One parameter's type; `check(value, where)` returns the normalised value or raises ParameterError."""

    expects = "a value"

    def check(self, value, where: str):
        return value

    def fail(self, value, where: str):
        raise ParameterError(f"{where}: got {_show(value)}; expected {self.expects}")


class Int(Spec):
    def __init__(self, lo: int | None = None, hi: int | None = None):
        self.lo, self.hi = lo, hi
        rng = [f">= {lo}" if lo is not None else "", f"<= {hi}" if hi is not None else ""]
        self.expects = "an integer" + (" " + " and ".join(r for r in rng if r) if any(rng) else "")

    def check(self, value, where):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(value, where)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            self.fail(value, where)
        return value


class Float(Spec):
    """A real number in a range; `lo_open` / `hi_open` exclude the bound."""

    def __init__(self, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
        self.lo, self.hi, self.lo_open, self.hi_open = lo, hi, lo_open, hi_open
        rng = []
        if lo is not None:
            rng.append(f"{'>' if lo_open else '>='} {lo:g}")
        if hi is not None:
            rng.append(f"{'<' if hi_open else '<='} {hi:g}")
        self.expects = "a number" + (" " + " and ".join(rng) if rng else "")

    def check(self, value, where):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
            self.fail(value, where)
        value = float(value)
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            self.fail(value, where)
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            self.fail(value, where)
        return value


class Bool(Spec):
    expects = "true or false"

    def check(self, value, where):
        if not isinstance(value, bool):
            self.fail(value, where)
        return value


class Str(Spec):
    """A non-empty string; `choices` restricts it, `pattern` must match it whole."""

    def __init__(self, choices=None, pattern: str | None = None, what: str | None = None):
        self.choices = tuple(choices) if choices is not None else None
        self.pattern = re.compile(pattern) if pattern else None
        if self.choices is not None:
            self.expects = "one of " + ", ".join(map(repr, self.choices))
        else:
            self.expects = what or "a non-empty string"

    def check(self, value, where):
        if not isinstance(value, str) or not value:
            self.fail(value, where)
        if self.choices is not None and value not in self.choices:
            self.fail(value, where)
        if self.pattern is not None and not self.pattern.fullmatch(value):
            self.fail(value, where)
        return value


class Optional(Spec):
    """`None` or the inner spec."""

    def __init__(self, inner: Spec):
        self.inner = inner
        self.expects = f"null or {inner.expects}"

    def check(self, value, where):
        return None if value is None else _retry(self, self.inner, value, where)


class Either(Spec):
    """The first of several specs that accepts the value."""

    def __init__(self, *options: Spec):
        self.options = options
        self.expects = " or ".join(o.expects for o in options)

    def check(self, value, where):
        for opt in self.options:
            try:
                return opt.check(value, where)
            except ParameterError:
                continue
        self.fail(value, where)


def _retry(outer: Spec, inner: Spec, value, where):
    try:
        return inner.check(value, where)
    except ParameterError:
        outer.fail(value, where)


class ListOf(Spec):
    """A list of items (a single item is a one-item list); `min_len` items at least."""

    def __init__(self, item: Spec, min_len: int = 1):
        self.item, self.min_len = item, min_len
        self.expects = f"a list of {min_len}+ items, each {item.expects}"

    def check(self, value, where):
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            if isinstance(value, (Mapping, set)):
                self.fail(value, where)
            value = [value]
        if len(value) < self.min_len:
            self.fail(value, where)
        return [self.item.check(v, f"{where}, item {i}") for i, v in enumerate(value)]


class DictOf(Spec):
    """A mapping with string keys and values of `item` (any value when None)."""

    def __init__(self, item: Spec | None = None):
        self.item = item
        self.expects = "a mapping {name: " + (item.expects if item else "value") + "}"

    def check(self, value, where):
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            self.fail(value, where)
        if self.item is None:
            return dict(value)
        return {k: self.item.check(v, f"{where}, entry {k!r}") for k, v in value.items()}


class PerKey(Spec):
    """A value per dataset or per backbone: the keys are the items of other list parameters (`keys`).

    A scalar applies to every key; a mapping may name keys that are not in use (ignored entries are kept);
    a key without an entry gets `fallback` (an error when there is no fallback).
    """

    NO_FALLBACK = object()

    def __init__(self, item: Spec, keys: tuple[str, ...], fallback=NO_FALLBACK, kind: str = "name"):
        self.item, self.keys, self.fallback, self.kind = item, tuple(keys), fallback, kind
        self.expects = f"{item.expects}, or a mapping {{{kind}: {item.expects}}}"

    def check_keys(self, value, where, keys: list[str]):
        if isinstance(value, Mapping):
            if not all(isinstance(k, str) for k in value):
                self.fail(value, where)
            out = {k: self.item.check(v, f"{where}, entry {k!r}") for k, v in value.items()}
        else:
            try:
                one = self.item.check(value, where)
            except ParameterError:
                self.fail(value, where)
            out = {k: one for k in keys}
        for k in keys:
            if k not in out:
                if self.fallback is PerKey.NO_FALLBACK:
                    raise ParameterError(f"{where}: no entry for {self.kind} {k!r} in {_show(value)}; "
                                         f"add one, or give a single value for all")
                out[k] = self.fallback
        return out


class Schema(Mapping):
    """The declared parameters of one notebook, in order; a Mapping name -> Spec.

    paper: the paper key (kitlib.profiles). With it, and `profile` and `overrides` among the parameters,
    `check` applies the profile's parameter set and then `overrides` over the cell's values, exactly as
    ``python -m kitlib reproduce --profile P -p key=value`` does, so the profile set in a notebook's
    parameters cell is the profile that runs, in JupyterLab too.
    """

    def __init__(self, paper: str | None = None, **specs: Spec):
        self.paper = paper
        self.specs = specs

    def __getitem__(self, name):
        return self.specs[name]

    def __iter__(self):
        return iter(self.specs)

    def __len__(self):
        return len(self.specs)

    def check(self, values: Mapping) -> dict:
        """Validated, normalised values of every declared parameter (other names in `values` are ignored).

        Raises ParameterError naming the first bad parameter, what it got and what it expects.
        """
        missing = [n for n in self.specs if n not in values]
        if missing:
            raise ParameterError(f"parameter(s) {', '.join(missing)} not set: the parameters cell must define them")
        values = self.apply_profile(values)
        out = {}
        for name, spec in self.specs.items():  # lists and scalars first: PerKey needs its keys
            if not isinstance(spec, PerKey):
                out[name] = spec.check(values[name], f"parameter {name!r}")
        for name, spec in self.specs.items():
            if isinstance(spec, PerKey):
                keys = list(dict.fromkeys(k for src in spec.keys for k in out[src]))
                out[name] = spec.check_keys(values[name], f"parameter {name!r}", keys)
        return {name: out[name] for name in self.specs}


    def apply_profile(self, values: Mapping) -> dict:
        """The cell's values with the profile's parameter set and then `overrides` applied (see the class).

        In a notebook kernel (values = its globals) the parameters the profile changed are printed, so a value
        edited in the cell and replaced by the profile is never replaced silently.
        """
        values = dict(values)
        if not (self.paper and "profile" in self.specs and "overrides" in self.specs):
            return values
        from kitlib import profiles

        profile = self.specs["profile"].check(values["profile"], "parameter 'profile'")
        overrides = self.specs["overrides"].check(values["overrides"], "parameter 'overrides'")
        unknown = [k for k in overrides if k not in self.specs or k in ("profile", "overrides")]
        if unknown:
            raise ParameterError(f"parameter 'overrides': {', '.join(map(repr, unknown))} is not a parameter that "
                                 f"can be overridden; choose among {[k for k in self.specs if k not in ('profile', 'overrides')]}")
        applied = {} if profile == "smoke" else profiles.get(self.paper, profile)
        applied.pop("profile", None)
        changed = {k: (values.get(k), v) for k, v in applied.items() if values.get(k) != v and k not in overrides}
        values.update(applied)
        values.update(overrides)
        if values.get("__name__") == "__main__" and (changed or overrides):  # a notebook kernel's globals
            print(f"profile {profile!r} applied (as reproduce --profile {profile}); put your own changes in `overrides`:")
            for k, (old, new) in changed.items():
                print(f"  {k}: {old!r} -> {new!r}")
            for k, v in overrides.items():
                print(f"  {k}: {v!r} (overrides)")
        return values


# Shared specs of every paper notebook.
DEVICE = Str(pattern=r"auto|cpu|mps|cuda(:\d+)?", what="auto, cpu, cuda, cuda:N or mps")
PATH = Optional(Str(what="a folder path"))
