"""`maasctl ui`: a read-only web view of the store (models, versions, aliases, runs, servers) and its JSON API."""
