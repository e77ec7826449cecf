"""The route table (pure: weighted picks over resolved versions) and its watcher."""
