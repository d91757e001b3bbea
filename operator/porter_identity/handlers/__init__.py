"""Thin kopf handlers: parse -> decide (reconcile/) -> act (providers/) -> write status and Events."""
