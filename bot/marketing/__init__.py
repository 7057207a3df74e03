"""Marketing from the chat: staff commands, segments, campaigns (broadcasts, polls,
life-stage moments) and the staff audit."""
