"""EC2 Query API: SigV4 verification, parameter parsing, pagination, XML rendering, error mapping.

The protocol core here is pure (no I/O, no services); the action modules and the HTTP endpoint
build on it.
"""
