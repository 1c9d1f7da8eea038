"""Double-entry ledger: accounts, balanced transactions, balances, reconciliation."""
