"""A member's rights over her data (PIPL): summary, export, withdrawals, erasure, retention."""
