"""LightningModules that wire the plain networks to losses, optimisers and metrics."""
