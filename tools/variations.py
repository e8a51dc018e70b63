"""The variation table, read from the binary (`trailhound variations --json`).

The one names table: the Python tools and test runners take the variations'
ids, names, severities and credential kinds from here instead of keeping a
copy, so a variation added to src/variations.c reaches them without an edit.
The test oracles (RefDetector, make_cases.py's expectations) keep their own
rule logic; only the names and kinds come from the binary.

The binary is the first of: the `trailhound` argument, $TRAILHOUND, $TH_BIN,
<repo>/build/trailhound.
"""
import functools
import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def binary(trailhound=None):
    return (trailhound or os.environ.get("TRAILHOUND") or os.environ.get("TH_BIN")
            or os.path.join(REPO, "build", "trailhound"))


@functools.lru_cache(maxsize=None)
def load(trailhound=None):
    """{id: {"id", "name", "severity", "tactic", "credential", "upgradable", "description"}}"""
    exe = binary(trailhound)
    try:
        out = subprocess.run([exe, "variations", "--json"], check=True, capture_output=True,
                             text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"cannot read the variation table from {exe} "
                         f"(build it, or set $TRAILHOUND): {e}")
    return {v["id"]: v for v in json.loads(out)}


def names(trailhound=None):
    """{id: (alert name, severity)}, the shape the generators use."""
    return {i: (v["name"], v["severity"]) for i, v in load(trailhound).items()}


def judges_token(variation, trailhound=None):
    """True when the variation judges a function's own token (keyed by function),
    False when it judges another identity's session of a Lambda role (keyed by session)."""
    return load(trailhound)[variation]["credential"] == "token"
