"""Chat commands: the registry (C1) and the commands every daemon has."""
