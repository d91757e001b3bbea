"""PorterRoleSet: presets from the seed, IAM policy and trust documents, size limits and diff."""
