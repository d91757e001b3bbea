"""One folder per cloud, each a vertical slice: plan (pure), client (SDK, typed errors), link, drift; and the Link
interface they share (base.py) and the registry that picks one (registry.py)."""
