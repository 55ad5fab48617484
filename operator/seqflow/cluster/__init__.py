"""Seqflow's side of the API server: the client (kube), the Kopf watches that feed the
controllers (watches), the Leases that share runs between replicas (leases), and Events."""
