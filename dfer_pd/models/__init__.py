"""Networks as plain nn.Modules."""
