"""Action sinks: separate processes that consume leadscore.actions and act on them."""
