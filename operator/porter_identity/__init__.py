"""porter-identity: cloud identity for Kubernetes workloads, reconciled by kopf."""

GROUP = "identity.porter.run"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
