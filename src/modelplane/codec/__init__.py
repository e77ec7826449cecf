"""Protobuf <-> domain: the only bridge between the wire and the domain."""
