"""`plantstream sink alerts`: alert state changes routed to channels, delivered exactly once per channel."""
