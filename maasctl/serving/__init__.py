"""The built-in model server: Source -> Manager -> Handle, dynamic batching, the REST app (design.md §3)."""
