"""Pure rules behind cases: actor clusters, case ids and entity hashes, scores, review states.

No I/O: the node reads its store and passes arrays and values in
(``node.data.cases`` does that). See docs/cases.md and docs/adr/0009-cases.md.
"""
