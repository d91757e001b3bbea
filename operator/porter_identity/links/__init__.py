"""The link between a connection and its cloud identity: one implementation per cloud, one lifecycle for all."""
