"""Pure decisions: desired vs observed state -> actions and conditions. No I/O here."""
