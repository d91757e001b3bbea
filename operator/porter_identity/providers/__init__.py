"""Cloud adapters: they only talk to clouds, translating SDK errors into the typed errors below."""
