"""Not used: migrations are rendered by `schemagen generate` from changes/*.yaml."""
