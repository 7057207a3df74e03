"""The sister community (姐妹社区): matching mothers at a similar stage, and its actions."""
