"""Starting a fleet on this host: lighthouse, one worker per replica, supervision."""
