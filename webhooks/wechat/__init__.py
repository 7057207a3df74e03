"""The WeChat official-account channel: verify, decrypt, parse, dedupe, reply."""
