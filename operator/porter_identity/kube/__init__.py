"""Kubernetes-side helpers: status patches and Events."""
