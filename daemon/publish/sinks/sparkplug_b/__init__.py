"""The Sparkplug B protobuf schema (sparkplug_b.proto, a subset written from the specification) and its generated module."""
