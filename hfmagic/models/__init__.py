"""Model handles (a folder, a hub id, an object in memory, a built-in), and their variants."""
