"""Installed warninglists: the consortium's signed lists and the node's own local list.

Signed lists live in ``NODE_DIR/warninglists/<list_id>.signed`` (verified against
the CA at install and again at every load); the local list, unsigned, in
``NODE_DIR/warninglist.local.toml``. A value a list covers is flagged
``held_back`` in the store at import, and when a list is installed every held
signal is screened again; rounds leave flagged signals out
(``node.net.prepare.prepare_side``) and name the lists in force in their audit
record.
"""

from __future__ import annotations

from pathlib import Path

from node.runtime import Node, ca_public_key
from node.state.cases_store import bump, ensure_schema
from node.state.files import atomic_write
from node.state.store import Store
from protocol.errors import ConfigError, CrossmatchError, PolicyError
from protocol.rules import Rule
from protocol.warninglist import (
    Screen,
    Warninglist,
    parse_warninglist_toml,
    verify_signed_warninglist,
)

LIST_DIR = "warninglists"
LOCAL_LIST = "warninglist.local.toml"
SCREENED_CHUNK = 50_000


def installed_lists(node: Node) -> list[Warninglist]:
    """Every installed list, signed ones verified now, the local one last."""
    lists = []
    folder = node.paths.root / LIST_DIR
    ca = ca_public_key(node.ca_pem)
    for path in sorted(folder.glob("*.signed")) if folder.is_dir() else []:
        try:
            lists.append(verify_signed_warninglist(path.read_bytes(), ca))
        except (OSError, CrossmatchError) as e:
            raise ConfigError(f"installed warninglist {path} is not usable: {e}") from e
    local = node.paths.root / LOCAL_LIST
    if local.exists():
        lists.append(parse_warninglist_toml(local.read_bytes()))
    return lists


def screen_for(node: Node) -> Screen:
    return Screen(installed_lists(node))


def versions_in_force(node: Node) -> list[str]:
    """``list_id@version`` of every installed list, for round audit records."""
    return [wl.name for wl in installed_lists(node)]


def install(node: Node, data: bytes, *, force: bool = False) -> tuple[Warninglist, int]:
    """Verify and install a signed list, then re-screen the store; (list, signals held)."""
    wl = verify_signed_warninglist(data, ca_public_key(node.ca_pem))
    target = node.paths.root / LIST_DIR / f"{wl.list_id}.signed"
    if target.exists() and not force:
        current = verify_signed_warninglist(target.read_bytes(), ca_public_key(node.ca_pem))
        if wl.version < current.version:
            raise PolicyError(
                f"warninglist {wl.list_id} v{wl.version} is older than the "
                f"installed v{current.version} (--force to roll back)",
                rule=Rule.WARNINGLIST_ROLLBACK,
            )
    target.parent.mkdir(exist_ok=True)
    atomic_write(target, data)
    return wl, rescreen(node.store, screen_for(node))


def rescreen(store: Store, screen: Screen) -> int:
    """Flag again every held signal by the lists now in force (one transaction)."""
    ensure_schema(store)
    with store.transaction() as db:
        db.execute("DELETE FROM held_back")
        rows = db.execute("SELECT id, kind, normalized FROM signals WHERE kind != 'prompt'")
        held = 0
        while batch := rows.fetchmany(SCREENED_CHUNK):
            flagged = [
                (sid, name) for sid, kind, norm in batch if (name := screen(kind, norm)) is not None
            ]
            db.executemany("INSERT INTO held_back (signal_id, list) VALUES (?, ?)", flagged)
            held += len(flagged)
        bump(db, "entities_generation")  # links changed: re-cluster
    return held


def local_list_path(node_dir: Path) -> Path:
    return Path(node_dir) / LOCAL_LIST
