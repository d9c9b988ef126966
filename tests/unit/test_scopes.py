"""The scope catalog: parsing, the implication ladder, custom catalogs from TOML."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwarden.domain.errors import InvalidInput
from tokenwarden.domain.scopes import FULL_ACCESS, ScopeCatalog

CATALOG = ScopeCatalog.default()
NAMES = sorted(CATALOG.scopes)


# --------------------------------------------------------------------------- ladder
@pytest.mark.parametrize(
    ("higher", "lower"),
    [
        ("vso.code_write", "vso.code"),
        ("vso.code_manage", "vso.code_write"),
        ("vso.code_manage", "vso.code"),
        ("vso.code_full", "vso.code_manage"),
        ("vso.code_full", "vso.code"),
        ("vso.code_manage", "vso.code_status"),  # explicit rule
        ("vso.work_full", "vso.work_write"),  # a missing rung (no vso.work_manage) is skipped
        ("vso.work_full", "vso.work"),
        ("vso.packaging_manage", "vso.packaging_write"),
        ("vso.packaging_manage", "vso.packaging"),
        ("vso.build_execute", "vso.build"),
        ("vso.release_manage", "vso.release_execute"),
        ("vso.release_manage", "vso.release"),
        ("vso.pats_manage", "vso.pats"),
        ("vso.extension.data_write", "vso.extension.data"),
        ("vso.taskgroups_manage", "vso.taskgroups_read"),
    ],
)
def test_higher_rung_implies_lower_and_not_the_reverse(higher: str, lower: str) -> None:
    assert CATALOG.satisfies([higher], lower)
    assert not CATALOG.satisfies([lower], higher)
    assert lower in CATALOG.expand([higher])
    assert higher not in CATALOG.expand([lower])


@pytest.mark.parametrize(
    ("granted", "needed"),
    [
        ("vso.code", "vso.build"),
        ("vso.code_write", "vso.work"),
        ("vso.extension", "vso.extension.data"),  # "vso.extension.data" is its own family
        ("vso.pats", "vso.pats_manage"),
        ("vso.tokenadministration", "vso.pats"),
        ("vso.code_full", FULL_ACCESS),
    ],
)
def test_unrelated_scopes_do_not_imply_each_other(granted: str, needed: str) -> None:
    assert not CATALOG.satisfies([granted], needed)


def test_app_token_implies_every_scope() -> None:
    assert CATALOG.expand([FULL_ACCESS]) == frozenset(CATALOG.scopes)
    for name in NAMES:
        assert CATALOG.satisfies([FULL_ACCESS], name)


def test_the_catalog_holds_the_scopes_the_design_names() -> None:
    for name in (
        "vso.code",
        "vso.code_write",
        "vso.build_execute",
        "vso.release_manage",
        "vso.packaging",
        "vso.work_write",
        "vso.pats",
        "vso.pats_manage",
        "vso.tokenadministration",
        FULL_ACCESS,
    ):
        assert name in CATALOG
    assert "vso.nope" not in CATALOG


def test_expand_ignores_unknown_names_and_interns_equal_sets() -> None:
    assert CATALOG.expand(["vso.nope"]) == frozenset()
    assert CATALOG.expand([]) == frozenset()
    first = CATALOG.expand(["vso.code_write"])
    second = CATALOG.expand(["vso.code", "vso.code_write"])
    assert first == second == {"vso.code", "vso.code_write"}
    assert first is second
    assert not CATALOG.satisfies(["vso.nope"], "vso.nope")


# --------------------------------------------------------------------------- parse
def test_parse_splits_checks_and_deduplicates_keeping_order() -> None:
    assert CATALOG.parse("vso.work  vso.code\tvso.work\nvso.build") == ("vso.work", "vso.code", "vso.build")
    assert CATALOG.parse(["vso.code", "vso.code"]) == ("vso.code",)
    assert CATALOG.parse(FULL_ACCESS) == (FULL_ACCESS,)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_parse_rejects_empty(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CATALOG.parse(text)
    assert info.value.code == "invalidScope"


def test_parse_rejects_an_empty_list() -> None:
    with pytest.raises(InvalidInput) as info:
        CATALOG.parse([])
    assert info.value.code == "invalidScope"


@pytest.mark.parametrize("text", ["vso.nope", "vso.code vso.nope", "VSO.CODE", "vso.code,vso.build"])
def test_parse_rejects_unknown_scopes(text: str) -> None:
    with pytest.raises(InvalidInput) as info:
        CATALOG.parse(text)
    assert info.value.code == "invalidScope"


def test_parse_error_names_the_unknown_scope() -> None:
    with pytest.raises(InvalidInput, match=r"vso\.nope"):
        CATALOG.parse("vso.code vso.nope")


# --------------------------------------------------------------------------- custom catalogs
CUSTOM = """
[scopes]
app_token = "everything"
"repo" = "read repositories"
"repo_write" = "write repositories"
"repo_full" = "own repositories"
"deploy" = "deploy"
"deploy_approve" = "approve deployments"
"audit" = "read the audit log"

[implies]
"deploy_approve" = ["deploy"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scopes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_from_toml_loads_a_custom_catalog(tmp_path: Path) -> None:
    catalog = ScopeCatalog.from_toml(write(tmp_path, CUSTOM))
    assert set(catalog.scopes) == {
        "app_token",
        "repo",
        "repo_write",
        "repo_full",
        "deploy",
        "deploy_approve",
        "audit",
    }
    assert catalog.scopes["repo"] == "read repositories"
    assert catalog.satisfies(["repo_full"], "repo_write")  # ladder skips the missing _manage rung
    assert catalog.satisfies(["repo_full"], "repo")
    assert catalog.satisfies(["deploy_approve"], "deploy")  # explicit rule
    assert not catalog.satisfies(["deploy"], "deploy_approve")
    assert not catalog.satisfies(["repo_full"], "audit")
    assert catalog.expand(["app_token"]) == frozenset(catalog.scopes)
    assert catalog.parse("repo audit") == ("repo", "audit")
    with pytest.raises(InvalidInput):
        catalog.parse("vso.code")  # the default catalog is gone


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[scopes\napp_token = 'x'", id="not-toml"),
        pytest.param("[implies]\n", id="no-scopes-table"),
        pytest.param("[scopes]\n", id="empty-scopes"),
        pytest.param("scopes = 'app_token'", id="scopes-not-a-table"),
        pytest.param("[scopes]\nrepo = 'x'\n", id="no-app_token"),
        pytest.param("[scopes]\napp_token = 'x'\n[implies]\napp_token = ['repo']\n", id="implies-unknown"),
        pytest.param(
            "[scopes]\napp_token = 'x'\nrepo = 'y'\n[implies]\nghost = ['repo']\n", id="unknown-source"
        ),
        pytest.param("implies = 3\n[scopes]\napp_token = 'x'\n", id="implies-not-a-table"),
    ],
)
def test_from_toml_rejects_bad_files(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidInput):
        ScopeCatalog.from_toml(write(tmp_path, text))


def test_from_toml_rejects_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        ScopeCatalog.from_toml(tmp_path / "absent.toml")


def test_from_toml_rejects_an_implies_value_that_is_not_a_list(tmp_path: Path) -> None:
    # Regression: from_toml used to let a TypeError escape for a non-list [implies] value.
    with pytest.raises(InvalidInput):
        ScopeCatalog.from_toml(
            write(tmp_path, "[scopes]\napp_token = 'x'\nrepo = 'y'\n[implies]\nrepo = 3\n")
        )


def test_execute_rung_implies_the_base_scope_in_a_custom_catalog(tmp_path: Path) -> None:
    # Regression: the module docstring promises x_execute ⊇ x for every family; the ladder omitted it.
    catalog = ScopeCatalog.from_toml(
        write(tmp_path, "[scopes]\napp_token = 'x'\njob = 'r'\njob_execute = 'x'\n")
    )
    assert catalog.satisfies(["job_execute"], "job")


def test_constructor_requires_app_token() -> None:
    with pytest.raises(InvalidInput):
        ScopeCatalog({"repo": "r"})


# --------------------------------------------------------------------------- properties
scope_names = st.sampled_from(NAMES)
scope_sets = st.frozensets(scope_names, max_size=6)


@settings(max_examples=300)
@given(scope_names, scope_names, scope_names)
def test_implication_is_transitive(a: str, b: str, c: str) -> None:
    if CATALOG.satisfies([a], b) and CATALOG.satisfies([b], c):
        assert CATALOG.satisfies([a], c)


@given(scope_names)
def test_every_scope_implies_itself_and_is_implied_by_app_token(a: str) -> None:
    assert CATALOG.satisfies([a], a)
    assert a in CATALOG.expand([a])
    assert CATALOG.satisfies([FULL_ACCESS], a)


@given(scope_sets, scope_sets)
def test_expand_is_monotone(s: frozenset[str], t: frozenset[str]) -> None:
    assert CATALOG.expand(s) <= CATALOG.expand(s | t)
    assert s <= CATALOG.expand(s)


@given(scope_sets, scope_names)
def test_satisfies_agrees_with_expand(granted: frozenset[str], needed: str) -> None:
    assert CATALOG.satisfies(granted, needed) == (needed in CATALOG.expand(granted))


@given(scope_sets)
def test_expand_is_idempotent_and_the_union_of_single_expansions(s: frozenset[str]) -> None:
    expanded = CATALOG.expand(s)
    assert CATALOG.expand(expanded) == expanded
    union: set[str] = set()
    for name in s:
        union |= CATALOG.expand([name])
    assert expanded == union


FAMILIES = ("a", "b.c", "d")
RUNGS = ("", "_write", "_manage", "_full")


@st.composite
def random_catalogs(draw: st.DrawFn) -> ScopeCatalog:
    names = draw(
        st.sets(st.sampled_from([f + r for f in FAMILIES for r in RUNGS] + ["x", "y_read"]), min_size=1)
    )
    pool = sorted(names)
    implies = draw(st.dictionaries(st.sampled_from(pool), st.lists(st.sampled_from(pool), max_size=3)))
    return ScopeCatalog(
        {FULL_ACCESS: "all", **{n: n for n in names}}, {k: tuple(v) for k, v in implies.items()}
    )


@settings(max_examples=200)
@given(random_catalogs(), st.data())
def test_random_catalogs_keep_the_laws(catalog: ScopeCatalog, data: st.DataObject) -> None:
    names = sorted(catalog.scopes)
    a, b, c = (data.draw(st.sampled_from(names)) for _ in range(3))
    assert catalog.satisfies([a], a)
    if catalog.satisfies([a], b) and catalog.satisfies([b], c):
        assert catalog.satisfies([a], c)
    assert catalog.expand([FULL_ACCESS]) == frozenset(names)
    for higher, implied in catalog.implies.items():
        for lower in implied:
            assert catalog.satisfies([higher], lower)
    # The ladder: within a family every present rung implies every present lower rung.
    for family in FAMILIES:
        present = [family + r for r in RUNGS if family + r in catalog]
        for i, higher in enumerate(present):
            for lower in present[:i]:
                assert catalog.satisfies([higher], lower), (higher, lower)
