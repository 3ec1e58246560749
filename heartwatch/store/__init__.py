"""The store: the only code that speaks SQL (connections, the writer, migrations, codecs, queries, backup)."""
