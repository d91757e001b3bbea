"""GCP: Workload Identity members on IAM service accounts."""
