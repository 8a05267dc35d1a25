"""`plantstream bench ...`: one module per benchmark, each printing one JSON result."""
