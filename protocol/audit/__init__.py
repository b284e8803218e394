"""The verifiable audit trail: canonical records, an RFC 9162 Merkle log, signed checkpoints.

Pure: bytes and values in, values out, VerificationError on anything that does
not verify. ``node.state.auditlog`` does the file I/O. Modules:

  canonical   RFC 8785-style canonical JSON (one byte encoding per record)
  merkle      RFC 9162 tree head, inclusion and consistency proofs
  records     the signed record envelope and the hash chain
  checkpoint  signed-note checkpoints (log id, size, root, time)
  verify      whole-log verification and its report
  reconcile   round-by-round comparison of two labs' logs
  proofs      inclusion / consistency proof documents for third parties
"""
