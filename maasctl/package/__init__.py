"""Model packages (`.maas`): the archive format (archive.py) and what is built from and registered out of it (build.py)."""
