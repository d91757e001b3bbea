"""The one runner of connections: every reason to look at one asks here, one worker runs it, one writer of status."""
