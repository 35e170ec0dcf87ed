"""The fleet's network edge, shared by the launcher and the workers: admission (the gate
and its tunnels), the fleet secret, the fleet's progress record, host addresses.

Below both `launch` (which runs the gate) and `runtime` (whose replicas dial through a
tunnel), so that neither imports the other."""
