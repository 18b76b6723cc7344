"""The application layer: the release service, its metric checks and the scheduler loop; talks to
adapters only through bot.core.ports."""
