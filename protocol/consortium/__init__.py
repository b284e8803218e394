"""The consortium round: offenders held by at least k labs, counted by a hub that never
sees an identifier (docs/adr/0011-consortium-round.md)."""
