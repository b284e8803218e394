"""`crossmatch cases` and `crossmatch case ...`: review actor cases built from matches."""

from __future__ import annotations

from pathlib import Path

import click

from node.cli.common import (
    listing_format_option,
    node_dir_argument,
    print_json,
    print_rows,
    print_table,
)
from node.data.cases import CaseSummary, cases_stale, decide, get_case, list_cases, recompute_cases
from node.runtime import Node
from protocol.cases.lifecycle import STATES

CSV_COLUMNS = (
    "case_id",
    "state",
    "score",
    "entities",
    "peers",
    "kinds",
    "campaigns",
    "first_seen",
    "last_seen",
    "last_match_at",
    "pairs",
    "consortium",
)


def seen_by(c: CaseSummary) -> str:
    """The case's consortium evidence in a few words ("-" if none)."""
    return f"seen by {c.consortium['seen_by']}" if c.consortium else "-"


def _open(node_dir: Path) -> Node:
    node = Node(node_dir)
    if cases_stale(node.store):
        recompute_cases(node)
    return node


@click.command("cases")
@node_dir_argument
@click.option(
    "--state",
    type=click.Choice(["open", *STATES]),
    help="Only cases in this state (open: new or in review).",
)
@click.option("--peer", help="Only cases matched with this lab.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(1))
@click.option("--per-page", default=50, show_default=True, type=click.IntRange(1, 1000))
@listing_format_option
def cases(
    node_dir: Path, state: str | None, peer: str | None, page: int, per_page: int, fmt: str
) -> None:
    """Actor cases: clusters of our flagged accounts with signals shared with peers.

    Highest score first. Cases are refreshed first if imports or rounds changed anything.
    """
    with _open(node_dir) as node:
        result = list_cases(node.store, state=state, peer=peer, page=page, per_page=per_page)
    if fmt == "json":
        print_json(
            {
                "total": result.total,
                "page": page,
                "per_page": per_page,
                "cases": [c.to_dict() for c in result.cases],
            }
        )
        return
    # CSV and table cells name the evidence in words; JSON (above) keeps its object.
    print_rows(
        [{**c.to_dict(), "consortium": c.consortium.get("seen_by", "")} for c in result.cases],
        fmt,
        csv_columns=CSV_COLUMNS,
        headers=(
            "CASE",
            "STATE",
            "SCORE",
            "ACCOUNTS",
            "PEERS",
            "KINDS",
            "LAST MATCH",
            "CONSORTIUM",
        ),
        row=lambda c: (
            c["case_id"],
            c["state"],
            c["score"],
            c["entities"],
            ",".join(c["peers"]),
            ",".join(c["kinds"]),
            c["last_match_at"][:19],
            f"seen by {c['consortium']}" if c["consortium"] else "-",
        ),
    )
    if fmt == "table":
        click.echo(f"{len(result.cases)} of {result.total} case(s), page {page}")


@click.group("case")
def case() -> None:
    """Show a case and record review decisions (each one is an audit record)."""


@case.command("show")
@node_dir_argument
@click.argument("case_id")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def show(node_dir: Path, case_id: str, fmt: str) -> None:
    """A case: its accounts, what matched which peer in which round, score terms, history."""
    from node.data.case_feedback import peer_opinions

    with _open(node_dir) as node:
        detail = get_case(node.store, case_id)
        opinions = peer_opinions(node.store, case_id)
    if fmt == "json":
        print_json({**detail.to_dict(), "peer_opinions": opinions})
        return
    s = detail.summary
    _print_summary(s)
    click.echo(f"accounts ({s.entities}):")
    for e in detail.entities:
        extra = " ".join(f"{k}={e[k]}" for k in ("severity", "campaign", "reason") if e[k])
        click.echo(
            f"  {e['key']}  {e['first_seen'] or '-'} .. {e['last_seen'] or '-'}  {extra}".rstrip()
        )
    click.echo("matched signals:")
    print_table(
        ["ACCOUNT", "KIND", "VALUE", "PEER", "ROUND", "MATCHED AT"],
        [
            (
                m["entity"],
                m["kind"],
                m["value"],
                m["peer"],
                m["round_id"][:12],
                m["matched_at"][:19],
            )
            for m in detail.matches
        ],
    )
    for c in detail.campaigns:
        click.echo(
            f"matched prompt campaign {c['label'] or '(unlabelled)'} with {c['peer']} "
            f"in round {str(c['round_id'])[:12]}: {c['prompts']} prompt(s)"
        )
    for op in opinions:
        click.echo(f"peer opinion: {op['peer']} says {op['verdict']} on {op['signals']} signal(s)")
    for ev in detail.events:
        note = f": {ev['note']}" if ev["note"] else ""
        click.echo(
            f"{ev['at'][:19]} {ev['analyst']} {ev['decision']} "
            f"({ev['state_from']} -> {ev['state_to']}){note}"
        )


def _print_summary(s: CaseSummary) -> None:
    click.echo(f"case {s.case_id}  state {s.state}  score {s.score}")
    click.echo(
        f"  peers: {', '.join(s.peers)}; kinds: {', '.join(s.kinds)}; "
        f"campaigns: {', '.join(s.campaigns) or '-'}"
    )
    t = s.terms
    click.echo(
        f"  score = {t['peers']} peer(s) -> {t['peers_points']} + "
        f"{len(t['kind_families'])} kind famil(ies) -> {t['kinds_points']}, "  # type: ignore[arg-type]
        f"x recency {t['recency']} ({t['days_since_last_match']} days)"
    )
    if s.consortium:
        e = s.consortium
        click.echo(
            f"  consortium: {seen_by(s)} ({e['signals']} signal(s): "
            f"{', '.join(e['kinds'])}; {e['rounds']} round(s)); beside the score, not in it"  # type: ignore[arg-type]
        )
    click.echo(
        f"  first seen {s.first_seen or '-'}, last seen {s.last_seen or '-'}, "
        f"last match {s.last_match_at[:19]}, {s.rounds} round(s)"
    )


def _decision(name: str, decision: str | None, help_text: str) -> None:
    @case.command(name, help=help_text)
    @node_dir_argument
    @click.argument("case_id")
    @click.option("--analyst", required=True, help="Who decides (recorded in the audit log).")
    @click.option("--note", default="", help="Why (kept locally; the audit log holds its HMAC).")
    @click.option(
        "--as",
        "as_",
        type=click.Choice(["false_positive", "benign"]),
        default="false_positive",
        show_default=True,
        help="dismiss: as a false positive or as benign activity.",
    )
    def command(node_dir: Path, case_id: str, analyst: str, note: str, as_: str) -> None:
        chosen = decision or as_
        if chosen == "note" and not note:
            raise click.UsageError("give the note with --note")
        with Node(node_dir) as node:
            summary = decide(node, case_id, chosen, analyst, note)
        click.echo(f"case {summary.case_id}: {chosen} by {analyst}; state {summary.state}")


_decision("review", "review", "Take a case into review.")
_decision("confirm", "confirm", "Confirm a case: the accounts are one abusive actor.")
_decision("dismiss", None, "Dismiss a case as a false positive (default) or benign.")
_decision("note", "note", "Add a note to a case without changing its state.")


@case.command("share")
@node_dir_argument
@click.argument("case_id")
@click.option("--peer", required=True, help="The lab to tell (it matched these signals).")
def share(node_dir: Path, case_id: str, peer: str) -> None:
    """Tell PEER our verdict (confirmed or false positive) on the signals it matched.

    Only signals both labs learned in a reveal round between them are named, and
    only if the consortium policy sets peer_feedback. Audited on both sides.
    """
    from node.data.case_feedback import share_case

    with Node(node_dir) as node:
        sent = share_case(node, case_id, peer)
    click.echo(f"case {case_id}: {sent} opinion(s) accepted by {peer}")


@case.command("recompute")
@node_dir_argument
@click.option("--full", is_flag=True, help="Re-cluster every entity, not only what changed.")
def recompute(node_dir: Path, full: bool) -> None:
    """Rebuild cases now (the daemon does it after each round)."""
    with Node(node_dir) as node:
        report = recompute_cases(node, full=full)
    click.echo(
        f"{report.clusters} cluster(s) rebuilt, {report.cases} open case(s), "
        f"{len(report.reopened)} re-opened, {report.expired} expired"
    )


def register(group: click.Group) -> None:
    group.add_command(cases)
    group.add_command(case)
