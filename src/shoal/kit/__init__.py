"""Pure helpers: ids, time, cursor pagination, json. No I/O."""
