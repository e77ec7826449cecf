"""Plain data and errors shared by every layer; standard library only."""
