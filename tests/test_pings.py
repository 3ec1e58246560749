"""parse_ping: every URL form, suffix and query parameter of DESIGN.md section 3, without a server."""

from __future__ import annotations

import pytest

from heartwatch.core.model import PingKind
from heartwatch.core.pings import BadPing, PingRequest, parse_ping

UUID = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
KEY = "k3y-for-slug-urls"


def bad(path: str, query: dict[str, str] | None = None) -> BadPing:
    with pytest.raises(BadPing) as info:
        parse_ping(path, query or {})
    return info.value


# --- the two URL forms ---------------------------------------------------------------------------------


def test_uuid_form_plain_ping_is_a_success() -> None:
    assert parse_ping(UUID, {}) == PingRequest(kind=PingKind.SUCCESS, uuid=UUID)


def test_uuid_is_lower_cased_and_trailing_slash_ignored() -> None:
    req = parse_ping(UUID.upper() + "/", {})
    assert req.uuid == UUID
    assert req.slug is None and req.ping_key is None


def test_slug_form_names_key_and_slug() -> None:
    req = parse_ping(f"{KEY}/nightly-backup", {})
    assert req == PingRequest(kind=PingKind.SUCCESS, ping_key=KEY, slug="nightly-backup")
    assert req.uuid is None


# --- Healthchecks suffixes -----------------------------------------------------------------------------

SUFFIXES = [
    ("start", PingKind.START, None),
    ("fail", PingKind.FAIL, None),
    ("log", PingKind.LOG, None),
    ("0", PingKind.SUCCESS, 0),
    ("3", PingKind.FAIL, 3),
    ("255", PingKind.FAIL, 255),
]


@pytest.mark.parametrize(("suffix", "kind", "exit_code"), SUFFIXES)
def test_suffix_on_uuid_form(suffix: str, kind: PingKind, exit_code: int | None) -> None:
    req = parse_ping(f"{UUID}/{suffix}", {})
    assert (req.kind, req.exit_code, req.uuid, req.step) == (kind, exit_code, UUID, None)


@pytest.mark.parametrize(("suffix", "kind", "exit_code"), SUFFIXES)
def test_suffix_on_slug_form(suffix: str, kind: PingKind, exit_code: int | None) -> None:
    req = parse_ping(f"{KEY}/backup/{suffix}", {})
    assert (req.kind, req.exit_code, req.ping_key, req.slug) == (kind, exit_code, KEY, "backup")


@pytest.mark.parametrize("code", ["256", "-1", "1000"])
@pytest.mark.parametrize("prefix", [UUID, f"{KEY}/backup"])
def test_exit_status_out_of_range_is_400(prefix: str, code: str) -> None:
    e = bad(f"{prefix}/{code}")
    assert e.status == 400
    assert "exit status" in e.reason and "0-255" in e.reason


@pytest.mark.parametrize("path", [f"{UUID}/finish", f"{UUID}/success", f"{UUID}/3x", f"{KEY}/backup/started"])
def test_unknown_suffix_is_404(path: str) -> None:
    e = bad(path)
    assert (e.status, e.reason) == (404, "not found")


@pytest.mark.parametrize("path", [
    "", "/", "not-a-uuid", f"{UUID}/start/extra", f"{KEY}/backup/start/extra", f"{KEY}/backup/0/1",
])
def test_wrong_number_of_segments_is_404(path: str) -> None:
    assert bad(path).status == 404


@pytest.mark.parametrize("slug", ["Backup", "back up", "a" * 65, "bäckup"])
def test_slug_outside_the_slug_alphabet_is_404(slug: str) -> None:
    assert bad(f"{KEY}/{slug}").status == 404


# --- ?step= --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("step", "kind"), [
    ("start", PingKind.START), ("finish", PingKind.SUCCESS), ("success", PingKind.SUCCESS), ("fail", PingKind.FAIL),
])
@pytest.mark.parametrize("prefix", [UUID, f"{KEY}/backup"])
def test_reserved_step_kinds(prefix: str, step: str, kind: PingKind) -> None:
    req = parse_ping(prefix, {"step": step})
    assert req.kind is kind
    assert req.step is None  # a reserved word is the kind of ping, not a step name


@pytest.mark.parametrize("prefix", [UUID, f"{KEY}/backup"])
def test_named_step_on_a_plain_ping_reports_that_step(prefix: str) -> None:
    req = parse_ping(prefix, {"step": "dump"})
    assert (req.kind, req.step) == (PingKind.STEP, "dump")


def test_step_log_means_a_log_ping_as_the_suffix_does() -> None:
    assert parse_ping(UUID, {"step": "log"}).kind is PingKind.LOG
    assert parse_ping(f"{UUID}/log", {"step": "log"}).kind is PingKind.LOG


@pytest.mark.parametrize("name", ["upload", "s3.sync", "phase:2", "A_b-9", "x" * 64])
def test_step_names_in_the_name_alphabet_are_accepted(name: str) -> None:
    assert parse_ping(UUID, {"step": name}).step == name


@pytest.mark.parametrize(("suffix", "kind", "exit_code"), [
    ("start", PingKind.START, None),  # start, and already at step "dump"
    ("fail", PingKind.FAIL, None),  # failed at step "dump"
    ("log", PingKind.LOG, None),
    ("0", PingKind.SUCCESS, 0),
    ("4", PingKind.FAIL, 4),
])
def test_named_step_combined_with_a_suffix_keeps_the_suffix_kind(
        suffix: str, kind: PingKind, exit_code: int | None) -> None:
    req = parse_ping(f"{UUID}/{suffix}", {"step": "dump"})
    assert (req.kind, req.step, req.exit_code) == (kind, "dump", exit_code)


@pytest.mark.parametrize(("suffix", "step"), [
    ("start", "start"), ("fail", "fail"), ("0", "finish"), ("0", "success"), ("7", "fail"),
])
def test_reserved_step_agreeing_with_the_suffix_is_fine(suffix: str, step: str) -> None:
    req = parse_ping(f"{UUID}/{suffix}", {"step": step})
    assert req.step is None
    assert req.kind is parse_ping(f"{UUID}/{suffix}", {}).kind


@pytest.mark.parametrize(("suffix", "step"), [
    ("start", "finish"), ("start", "fail"), ("fail", "start"), ("fail", "finish"), ("log", "start"),
    ("0", "fail"), ("0", "start"), ("3", "finish"),
])
def test_reserved_step_contradicting_the_suffix_is_400(suffix: str, step: str) -> None:
    e = bad(f"{UUID}/{suffix}", {"step": step})
    assert e.status == 400
    assert f"step={step}" in e.reason and f"/{suffix}" in e.reason


@pytest.mark.parametrize("name", ["", "two words", "a/b", "x" * 65, "émoji", "semi;colon"])
def test_bad_step_name_is_400(name: str) -> None:
    e = bad(UUID, {"step": name})
    assert e.status == 400
    assert "step name" in e.reason


# --- ?rid= ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rid", ["1", "run-42", "2024-05-01T02:00:00", "a.b_c:d-e", "r" * 64,
                                 "6f1c0e9e-3b7a-4e0c-9a55-7d2f0c1b8e11", "6F1C0E9E-3B7A-4E0C-9A55-7D2F0C1B8E11"])
def test_good_rid_is_kept_as_given(rid: str) -> None:
    assert parse_ping(f"{UUID}/start", {"rid": rid}).rid == rid


@pytest.mark.parametrize("rid", ["", "has space", "r" * 65, "a/b", "a+b", "naïve"])
def test_bad_rid_is_400(rid: str) -> None:
    e = bad(f"{UUID}/start", {"rid": rid})
    assert e.status == 400
    assert "rid" in e.reason


def test_no_rid_means_none() -> None:
    assert parse_ping(UUID, {}).rid is None


def test_step_and_rid_and_suffix_together() -> None:
    req = parse_ping(f"{KEY}/backup/fail", {"step": "upload", "rid": "r1"})
    assert req == PingRequest(kind=PingKind.FAIL, ping_key=KEY, slug="backup", step="upload", rid="r1")


# --- ?create= ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "create"), [("1", True), ("true", True), ("yes", True), ("0", False),
                                               ("", False), ("no", False)])
def test_create_flag(value: str, create: bool) -> None:
    assert parse_ping(f"{KEY}/new-job", {"create": value}).create is create


def test_create_defaults_to_false() -> None:
    assert parse_ping(f"{KEY}/new-job", {}).create is False


def test_errors_are_checked_in_a_fixed_order_unknown_check_shape_first() -> None:
    # A URL that is both the wrong shape and has a bad query is "not found", not a 400.
    assert bad(f"{UUID}/start/extra/more", {"rid": "bad rid"}).status == 404


@pytest.mark.parametrize("query", [{"rid": "r1\n"}, {"step": "dump\n"}])
def test_a_trailing_newline_does_not_sneak_into_rid_or_step(query: dict[str, str]) -> None:
    # `$` in a regex matches before a final newline; a rid or step "dump\n" would reach logs and HTML.
    assert bad(UUID, query).status == 400


@pytest.mark.parametrize("path", [UUID + "\n", f"{KEY}/backup\n"])
def test_a_trailing_newline_is_not_part_of_a_uuid_or_slug(path: str) -> None:
    assert bad(path).status == 404
