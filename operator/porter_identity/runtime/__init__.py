"""What kopf does not give as we need it: every use of kopf's private modules lives here, behind one version check."""
