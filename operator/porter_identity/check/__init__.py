"""`porter-identity check`: prove a connection's credential path end to end, as a pod would use it."""
