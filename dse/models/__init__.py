"""Backbones, exit branches, placement rules, exit criteria and the multi-exit network."""
