"""Development tooling (local database, seed, dev runner, demo assistant). Not deployed."""
