"""The pure advising domain: roster schema, specialty table, outlook rules and advice. No I/O."""
