"""One model of every timm family (the smallest by parameters, tests/graph/timm_families.json) traces, prunes
30% uniform L1, runs, keeps its output shape and verifies; "exact" is checked by zeroing plan.removals() in
the original here, independently of pk.verify.

Each row's `seconds` was measured by `python tests/graph/timm_families.py --time` (one process per model, one
thread, on the shared 2-core machine); the cheapest rows that fit in 60 s together (22 models; 214 s when
five other test jobs shared the machine) run in `make test`, the others carry `heavy` (`make test-heavy`, and
CI after `make test`).
"""
import pytest

from . import timm_zoo

ROWS = timm_zoo.FAMILIES + timm_zoo.EXTRAS  # extras: models named in issue 13 (weight standardisation, asserts)
PARAMS = [pytest.param(r, id=r["model"], marks=pytest.mark.heavy if r.get("heavy") else ()) for r in ROWS]


@pytest.mark.parametrize("row", PARAMS)
def test_timm_family(row):
    r = timm_zoo.check(dict(row))
    name = row["model"]
    assert not r["empty"] and r["shape_ok"] and r["params_kept"] < 0.95, r
    assert not r["verify_weak"], r
    if r["exact_claim"]:  # a wrong "exact" is the worst bug: the independent zeroing check must agree
        assert r["zeroing_rel_diff"] < 1e-4 and r["verify_exact"], f"{name} claims exact: {r}"
    else:
        assert r["reasons"], r
