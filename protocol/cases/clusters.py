"""Actor clusters: our entities joined by the infrastructure they share, in our own data.

The graph is bipartite: entities on one side, *links* on the other (a signal such
as one payment fingerprint, or a derived key such as an IPv4 /24). An entity and
a link are joined when the entity holds it; two entities are in one cluster when
a path of shared links joins them. Connected components of that graph are
computed by ``scipy.sparse.csgraph`` in linear time, which keeps a million
entities with five million links well inside a minute.
"""

from __future__ import annotations

import ipaddress

import numpy as np

IPV4_LINK_PREFIX = 24
IPV6_LINK_PREFIX = 48


def cluster_labels(
    entity_count: int, entity_index: np.ndarray, link_index: np.ndarray
) -> np.ndarray:
    """A component label per entity (``0..entity_count-1``) given edges entity -> link.

    ``entity_index[i]`` holds link ``link_index[i]``; both are non-negative integer
    arrays of the same length. Labels are arbitrary integers: equal means one cluster.
    """
    # Imported here: scipy takes a moment to load, and every CLI command imports this module.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    entities = np.asarray(entity_index, dtype=np.int64)
    links = np.asarray(link_index, dtype=np.int64)
    if entities.shape != links.shape:
        raise ValueError("entity and link arrays differ in length")
    if entity_count == 0:
        return np.zeros(0, dtype=np.int32)
    if len(entities) and (entities.min() < 0 or entities.max() >= entity_count):
        raise ValueError("an entity index is out of range")
    # Links are renumbered densely so that the graph has no empty columns to carry.
    _, dense = np.unique(links, return_inverse=True)
    size = entity_count + (int(dense.max()) + 1 if len(dense) else 0)
    graph = coo_matrix(
        (np.ones(len(entities), dtype=np.int8), (entities, entity_count + dense)),
        shape=(size, size),
    ).tocsr()
    _, labels = connected_components(graph, directed=False)
    return labels[:entity_count]


def network_key(ip_text: str) -> str | None:
    """The network an address links through: its /24 (IPv4) or /48 (IPv6), as text.

    ``ip_text`` is an address as normalized by ``protocol.fingerprints``; anything
    else (a prefix kind, say) gives None.
    """
    try:
        address = ipaddress.ip_address(ip_text)
    except ValueError:
        return None
    bits = IPV4_LINK_PREFIX if address.version == 4 else IPV6_LINK_PREFIX
    # The network address by masking the integer: a third of the cost of building an
    # ip_network from text, once for every address an entity import reads.
    host_bits = address.max_prefixlen - bits
    return f"{type(address)(int(address) >> host_bits << host_bits)}/{bits}"
