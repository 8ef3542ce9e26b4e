"""docs/osc.md is the OSC contract the patches are built from: it must say exactly what the dispatcher does."""

from __future__ import annotations

import re
from pathlib import Path

from musicbridge.bridge.osc import ERROR_CODES, REPLIES, ROUTES

DOC = Path(__file__).resolve().parents[1] / "docs" / "osc.md"


def _table(section: str) -> list[list[str]]:
    """Rows (cells without backticks) of the first table under a `## section` heading."""
    text = DOC.read_text()
    start = text.index(section)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("#"):
            break
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            rows.append([cell.strip().replace("`", "") for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header


def test_received_messages_match_the_dispatcher_table():
    documented = {(row[0], row[1], row[2]) for row in _table("## Messages the daemon receives")}
    table = {(route.address, route.signature, route.range_text) for route in ROUTES}
    assert documented == table, f"only in docs: {documented - table}; only in code: {table - documented}"


def test_sent_messages_match_the_reply_table():
    documented = {(row[0], row[1]) for row in _table("## Messages the daemon sends")}
    assert documented == {(reply.address, reply.signature) for reply in REPLIES}


def test_error_codes_are_documented():
    assert {row[0] for row in _table("### Error codes")} == set(ERROR_CODES)


def test_dispatcher_routes_are_unique_and_flat():
    addresses = [route.address for route in ROUTES]
    assert len(addresses) == len(set(addresses))
    for route in ROUTES:
        assert route.address.startswith("/musicbridge/")
        assert all(arg.type in ("i", "f", "s") for arg in route.args)  # flat atoms only (Pd's oscparse)
