"""End-to-end tests: the whole local stack (emulators, cluster, functions, ticker) driven through the CLI."""
