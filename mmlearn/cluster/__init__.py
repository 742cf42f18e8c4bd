"""Ray clusters: checking cluster files offline, and a real multi-node cluster on this machine."""
