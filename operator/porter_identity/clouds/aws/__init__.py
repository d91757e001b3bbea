"""AWS: EKS Pod Identity associations."""
