"""Named parameter sets (smoke / laptop / paper) for each paper notebook.

A notebook's `parameters` cell holds its smoke values; `python -m kitlib reproduce --profile P`
injects `get(paper, P)` through papermill, then any `-p key=value` overrides.
"""
from __future__ import annotations

import copy

PROFILE_NAMES = ("smoke", "laptop", "paper")

# paper key -> profile -> {notebook parameter: value}; filled by each notebook's issue.
PROFILES: dict[str, dict[str, dict]] = {}


def get(paper: str, profile: str) -> dict:
    """Parameters for `paper` at `profile` (a deep copy; always includes `profile`)."""
    if profile not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILE_NAMES}")
    if paper not in PROFILES:
        raise KeyError(f"no profiles defined for paper {paper!r}; known: {sorted(PROFILES)}")
    params = copy.deepcopy(PROFILES[paper].get(profile, {}))
    params["profile"] = profile
    return params
