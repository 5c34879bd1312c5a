"""Internal plumbing every job shares: atomic writes, the run lock and whose temporaries are whose,
content hashes, and the restricted, bounded unpickler. Not public API: import from the modules."""
