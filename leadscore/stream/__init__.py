"""The Faust side: app, table, agent. Thin: decode, call scoring, write, emit."""
