"""Jobs and tasks: the compute spec, statuses, dispatch to agents."""
