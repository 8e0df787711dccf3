"""Classic inventory policies (plain numpy functions), their tuning, and action decoding."""
