"""转人工: tickets that put a person between a member and the bot."""
