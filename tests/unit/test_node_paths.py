"""One NodePaths names every file of a node directory, and the docs list each of them."""

from __future__ import annotations

import inspect
from pathlib import Path

import node.config.paths
from node.config import NodePaths

ROOT = Path(__file__).resolve().parents[2]


def node_files() -> dict[str, str]:
    paths = NodePaths(Path("/n"))
    names = {
        name: getattr(paths, name)
        for name, value in inspect.getmembers(NodePaths)
        if isinstance(value, property) and name != "peers_dir"  # the folder of peer_key
    }
    names["peer_key"] = paths.peer_key("lab")
    return {name: str(path.relative_to("/n")) for name, path in names.items()}


def test_every_node_file_is_in_the_module_docstring_and_the_architecture() -> None:
    docstring = node.config.paths.__doc__ or ""
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for name, relative in node_files().items():
        shown = relative.replace("peers/lab.pub", "peers/<lab>.pub")
        leaf = shown.rsplit("/", 1)[-1]
        assert leaf in docstring, f"NodePaths.{name} ({shown}) missing from node/config/paths.py"
        assert f"`{shown}`" in architecture, f"NodePaths.{name} ({shown}) missing from the docs"


def test_the_files_other_modules_derive_are_the_same() -> None:
    from node.state.auditlog import checkpoint_path
    from node.state.epochs import CACHE_FILE

    paths = NodePaths(Path("/n"))
    assert paths.cache == Path("/n") / CACHE_FILE
    assert paths.audit_checkpoint == checkpoint_path(paths.audit_log)
